"""Forecast windows: 12 steps in (1 h at 5 min), 12 steps out, built once per city.

Each window is anchored at an *origin* step ``t``: the inputs are the readings
``t-11 .. t`` and the targets ``t+1 .. t+12`` (horizons 1..12; the field
reports 3, 6 and 12 = 15, 30, 60 min). Inputs per window, in this order:

- for each channel, its 12 input steps: the normalized speed (missing readings
  carry the last observation forward), the observed flag, and for graph
  models the diffused speeds ``P_f^k x``, ``P_b^k x`` (k = 1..hops, see
  :mod:`metamap.nn.graph`);
- calendar at the origin: sin and cos of the time of day, a weekend flag.

Targets are normalized speeds with a per-value mask (False where the reading
is missing, i.e. 0 in the file), so missing readings never enter a loss or a
metric.
"""

from __future__ import annotations

import numpy as np
import torch

from metamap.errors import ConfigError
from metamap.nn.graph import diffuse
from metamap.preprocessing import Standardizer
from metamap.traffic.data import TrafficData

HISTORY = 12
HORIZON = 12
REPORT_HORIZONS = (3, 6, 12)
N_CALENDAR = 3


def fit_scaler(values: np.ndarray, mask: np.ndarray) -> Standardizer:
    """The speed normalization: one mean and one standard deviation of the observed readings of ``values
    [T, N]`` (``mask`` True = observed; the training period of the training sensors), in the file's unit."""
    return Standardizer(name="traffic training readings").fit(values, mask)


def fill_forward(values: np.ndarray, mask: np.ndarray, fill: float) -> np.ndarray:
    """``values [T, N]`` with each missing reading replaced by the last observed one (``fill`` before any)."""
    index = np.where(mask, np.arange(len(values))[:, None], -1)
    np.maximum.accumulate(index, axis=0, out=index)
    filled = values[np.clip(index, 0, None), np.arange(values.shape[1])]
    return np.where(index >= 0, filled, fill).astype(np.float32)


def minutes_of_day(times: np.ndarray) -> np.ndarray:
    """``int64 [T]``: minutes since midnight of each ``datetime64`` time stamp."""
    return (times - times.astype("datetime64[D]")).astype("timedelta64[m]").astype(np.int64)


def weekdays(times: np.ndarray) -> np.ndarray:
    """``int64 [T]``: day of the week of each ``datetime64`` time stamp (Monday = 0 .. Sunday = 6)."""
    return (times.astype("datetime64[D]").astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday


def calendar_features(times: np.ndarray) -> np.ndarray:
    """``[T, 3]`` float32: sin, cos of the time of day and a weekend (Saturday/Sunday) flag."""
    angle = 2 * np.pi * minutes_of_day(times) / (24 * 60)
    weekday = weekdays(times)
    return np.stack([np.sin(angle), np.cos(angle), (weekday >= 5).astype(np.float64)], axis=1).astype(np.float32)


class SeriesFeatures:
    """Inputs and targets of every forecast window of one city.

    Args:
        data: the city's readings.
        scaler: normalization fitted on training readings only (:func:`fit_scaler`).
        graph_hops: diffusion hops for graph-aware inputs (0 = per-node model;
            needs ``data.adjacency``).

    Attributes:
        channels: ``float32 [N, C, T]`` per-node input channels.
        calendar: ``float32 [T, 3]``.
        target: ``float32 [N, T]`` normalized readings (0 where missing).
        target_mask: ``bool [N, T]``.
        raw: ``float32 [N, T]`` readings in the file's unit (0 where missing).
        last_observed: ``float32 [N, T]`` the last observed reading at or before
            each step, in the file's unit (persistence); NaN before the first one.
    """

    def __init__(self, data: TrafficData, scaler: Standardizer, graph_hops: int = 0) -> None:
        if graph_hops < 0:
            raise ConfigError(f"graph_hops must be >= 0, got {graph_hops}")
        if graph_hops and data.adjacency is None:
            raise ConfigError(f"a graph model needs an adjacency, but {data.name} was loaded without one (--adj)")
        self.data = data
        self.scaler = scaler
        self.graph_hops = graph_hops
        mask = torch.from_numpy(data.mask.T.copy())
        self.raw = torch.from_numpy(data.values.T.copy())
        normalized = scaler.transform(self.raw)
        filled = torch.from_numpy(fill_forward(data.values, data.mask, fill=np.nan).T.copy())
        self.last_observed = filled
        inputs = torch.nan_to_num(scaler.transform(filled), nan=0.0)  # before any reading: the mean
        channels = [inputs, mask.float()]
        if graph_hops:
            channels += list(diffuse(inputs, torch.from_numpy(data.adjacency), graph_hops))
        self.channels = torch.stack(channels, dim=1).float()
        self.calendar = torch.from_numpy(calendar_features(data.times))
        self.target = torch.where(mask, normalized, torch.zeros(())).float()
        self.target_mask = mask

    @property
    def n_features(self) -> int:
        return self.channels.shape[1] * HISTORY + N_CALENDAR

    def origins(self, start: int, stop: int, inputs_inside: bool = True) -> torch.Tensor:
        """Origins ``[W]`` whose targets lie in steps ``[start, stop)``; with ``inputs_inside`` the inputs too.

        Otherwise the inputs may reach back before ``start`` (a forecast made
        early in a test period sees the preceding hour).
        """
        first = start + HISTORY - 1 if inputs_inside else max(start - 1, HISTORY - 1)
        return torch.arange(first, stop - HORIZON)

    def windows(self, nodes: torch.Tensor, origins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Windows of ``nodes [n]`` at ``origins [n, W]`` (or ``[W]`` for all nodes).

        Returns ``x [n, W, n_features]``, ``y [n, W, 12]`` normalized targets
        and ``mask [n, W, 12]``.
        """
        origins = per_node(origins, nodes)
        n, w = origins.shape
        past = origins[..., None] + torch.arange(-HISTORY + 1, 1)  # [n, W, 12]
        channels = self.channels[nodes]  # [n, C, T]
        c = channels.shape[1]
        index = past.reshape(n, 1, w * HISTORY).expand(n, c, -1)
        inputs = channels.gather(2, index).reshape(n, c, w, HISTORY).permute(0, 2, 1, 3).reshape(n, w, c * HISTORY)
        x = torch.cat([inputs, self.calendar[origins]], dim=-1)
        return x, _future(self.target, nodes, origins), _future(self.target_mask, nodes, origins)

    def truth(self, nodes: torch.Tensor, origins: torch.Tensor) -> torch.Tensor:
        """Readings in the file's unit at the targets of the windows, ``[n, W, 12]`` (0 where missing)."""
        return _future(self.raw, nodes, per_node(origins, nodes))

    def observed(self, nodes: torch.Tensor, origins: torch.Tensor) -> torch.Tensor:
        """``bool [n, W, 12]``: whether a reading exists at each target of the windows."""
        return _future(self.target_mask, nodes, per_node(origins, nodes))


def per_node(origins: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
    """Forecast origins per node: ``origins [W]`` shared by all ``nodes [N]`` -> ``[N, W]``; ``[N, W]`` as is."""
    return origins.expand(len(nodes), -1) if origins.dim() == 1 else origins


def _future(series: torch.Tensor, nodes: torch.Tensor, origins: torch.Tensor) -> torch.Tensor:
    """``series [N, T]`` at steps ``origin + 1 .. origin + 12`` of each window: ``[n, W, 12]``."""
    n, w = origins.shape
    future = origins[..., None] + torch.arange(1, HORIZON + 1)
    return series[nodes].gather(1, future.reshape(n, w * HORIZON)).reshape(n, w, HORIZON)
