"""Forecast windows built once per city, their lengths given by a :class:`Windows` spec.

Each window is anchored at an *origin* step ``t``: the inputs are the readings
``t-history+1 .. t`` and the targets ``t+1 .. t+horizon``. The defaults, 12
steps in and 12 out with horizons 3, 6 and 12 reported, are the field's
setting for 5-minute data (1 hour in, 15 / 30 / 60 minutes out); commands take
them as durations (``--history 2h --horizons 1h,3h,6h``) and convert them to
the data's own steps. Inputs per window, in this order:

- for each channel, its ``history`` input steps: the normalized reading
  (missing readings carry the last observation forward), the observed flag,
  and for graph models the diffused readings ``P_f^k x``, ``P_b^k x``
  (k = 1..hops, see :mod:`metamap.nn.graph`);
- calendar at the origin: sin and cos of the time of day, a weekend flag;
- with ``seasonal`` inputs, for each target step: the normalized reading one
  day before it, one week before it, and on the last earlier day of the same
  kind (weekday or weekend): the seasonal-naive forecasts of :data:`SEASONAL`,
  which fall back to the last reading at the origin where the lagged one is
  missing, not yet read at the origin, or before the file;
- with ``profiles`` inputs, for each target step: the sensor's own profiles of
  :data:`PROFILES` (its mean reading at that time of day over the last week,
  at that time of week over the last four weeks), and, per profile, the share
  of those days or weeks that held a reading for the first target step (how
  far the profile can be trusted). They are off by default: on the bundled
  week of METR-LA they made every network worse, as a profile averages at most
  six earlier days and its coverage grows from training to test.

Targets are normalized readings with a per-value mask (False where the
reading is missing), so missing readings never enter a loss or a metric. With
a *base* forecast (``persistence`` or a seasonal naive one, see
:data:`BASES`), the targets are the residuals
from it: a network then learns the correction to that classical forecast,
starting from it rather than from nothing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from metamap.arguments import duration_label, steps_of
from metamap.errors import ConfigError
from metamap.nn.graph import diffuse
from metamap.preprocessing import Standardizer
from metamap.traffic.data import TrafficData

N_CALENDAR = 3
DAYS_PER_WEEK = 7
# The seasonal-naive forecasts: the lag in days by the target's weekday (Monday .. Sunday). "daytype" reads the
# last earlier day of the same kind (weekday or weekend): Monday reads Friday, Saturday the Sunday before.
SEASONAL = {
    "seasonal_naive_day": (1,) * DAYS_PER_WEEK,
    "seasonal_naive_week": (DAYS_PER_WEEK,) * DAYS_PER_WEEK,
    "seasonal_naive_daytype": (3, 1, 1, 1, 1, 6, 1),
}
# The causal profiles (historical averages updated as readings come): (days per period, periods averaged). A
# profile reads only readings at or before the origin, the same time of day (week) some whole periods back.
PROFILES = {"profile_day": (1, 7), "profile_week": (DAYS_PER_WEEK, 4)}
# Shrinkage of the week profile toward the day profile: the day profile counts as this many weeks of readings,
# so a sensor seen for one week gets 80% of that week, and one seen on no earlier same weekday the day profile.
WEEK_PRIOR_WEEKS = 0.25
BASES = ("persistence", *SEASONAL, *PROFILES)  # the causal forecasts a network may correct


@dataclass(frozen=True)
class Windows:
    """The shape of a forecast window, in steps of the data.

    Attributes:
        history: input steps (the origin and the ``history - 1`` before it).
        horizons: the reported horizons in steps, increasing; the window
            forecasts every step ``1 .. max(horizons)``.
        seasonal: whether the inputs hold the readings one day and one week
            before each target step.
        profiles: whether the inputs hold the sensor's profiles (:data:`PROFILES`)
            at each target step and how many periods each saw.
        base: the classical forecast the targets are residuals from (a key of
            :data:`BASES`), or None for plain targets.
        nonnegative: whether learned forecasts are clipped at 0 (counts and
            flows cannot be negative).
    """

    history: int = 12
    horizons: tuple[int, ...] = (3, 6, 12)
    seasonal: bool = True
    base: str | None = None
    nonnegative: bool = False
    profiles: bool = False

    def __post_init__(self) -> None:
        if self.history < 1:
            raise ConfigError(f"history: expected at least 1 step, got {self.history}")
        if not self.horizons or list(self.horizons) != sorted(set(self.horizons)) or self.horizons[0] < 1:
            raise ConfigError(f"horizons: expected increasing steps >= 1, got {list(self.horizons)}")
        if self.base is not None and self.base not in BASES:
            raise ConfigError(f"unknown base forecast {self.base!r}; expected one of {', '.join(BASES)}")

    @property
    def horizon(self) -> int:
        """Steps forecast per window: the longest horizon."""
        return self.horizons[-1]

    def labels(self, step_minutes: int) -> tuple[str, ...]:
        """The reported horizons as durations, e.g. ``("15min", "30min", "1h")`` at 5-minute steps."""
        return tuple(duration_label(h * step_minutes) for h in self.horizons)

    @classmethod
    def from_minutes(
        cls, step_minutes: int, history: int | None, horizons: tuple[int, ...] | None, **options: Any
    ) -> Windows:
        """The windows for data read every ``step_minutes``, from a ``history`` and ``horizons`` in minutes.

        None keeps the default in steps (12 in; 3, 6, 12 out). A duration that
        is not a whole number of steps is refused.
        """
        default = cls()
        return cls(
            history=default.history if history is None else steps_of(history, step_minutes, "--history"),
            horizons=default.horizons
            if horizons is None
            else tuple(steps_of(m, step_minutes, "--horizons") for m in horizons),
            **options,
        )


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
        windows: the window lengths, seasonal inputs and base forecast.

    Attributes:
        channels: ``float32 [N, C, T]`` per-node input channels.
        calendar: ``float32 [T, 3]``.
        target: ``float32 [N, T]`` normalized readings (0 where missing).
        target_mask: ``bool [N, T]``.
        raw: ``float32 [N, T]`` readings in the file's unit (0 where missing).
        last_observed: ``float32 [N, T]`` the last observed reading at or before
            each step, in the file's unit (persistence); NaN before the first one.
        times: ``datetime64 [T + horizon]`` the file's times and the ``horizon``
            steps after it; ``weekday``: ``int64 [T + horizon]`` their weekdays.
    """

    def __init__(
        self, data: TrafficData, scaler: Standardizer, graph_hops: int = 0, windows: Windows | None = None
    ) -> None:
        if graph_hops < 0:
            raise ConfigError(f"graph_hops must be >= 0, got {graph_hops}")
        if graph_hops and data.adjacency is None:
            raise ConfigError(f"a graph model needs an adjacency, but {data.name} was loaded without one (--adj)")
        self.data = data
        self.scaler = scaler
        self.graph_hops = graph_hops
        self.spec = windows or Windows()
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
        ahead = data.times[-1] + np.arange(1, self.horizon + 1) * np.timedelta64(data.step_minutes, "m")
        self.times = np.concatenate([data.times, ahead])  # [T + horizon]: a forecast from the last step needs them
        self.weekday = torch.from_numpy(weekdays(self.times))
        self.target = torch.where(mask, normalized, torch.zeros(())).float()
        self.target_mask = mask
        self._trailing: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}  # see _trailing_sums

    def with_windows(self, windows: Windows) -> SeriesFeatures:
        """The same readings and channels with another window spec (e.g. a base forecast chosen later)."""
        if windows.horizon != self.horizon:
            raise ConfigError(f"with_windows: expected a horizon of {self.horizon} steps, got {windows.horizon}")
        other = copy.copy(self)
        other.spec = windows
        return other

    @property
    def history(self) -> int:
        return self.spec.history

    @property
    def horizon(self) -> int:
        return self.spec.horizon

    @property
    def n_features(self) -> int:
        seasonal = len(SEASONAL) * self.horizon if self.spec.seasonal else 0
        profiles = len(PROFILES) * (self.horizon + 1) if self.spec.profiles else 0
        return self.channels.shape[1] * self.history + N_CALENDAR + seasonal + profiles

    def origins(self, start: int, stop: int, inputs_inside: bool = True) -> torch.Tensor:
        """Origins ``[W]`` whose targets lie in steps ``[start, stop)``; with ``inputs_inside`` the inputs too.

        Otherwise the inputs may reach back before ``start`` (a forecast made
        early in a test period sees the preceding readings).
        """
        first = start + self.history - 1 if inputs_inside else max(start - 1, self.history - 1)
        return torch.arange(first, max(first, stop - self.horizon))  # empty where no window fits

    def windows(self, nodes: torch.Tensor, origins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Windows of ``nodes [n]`` at ``origins [n, W]`` (or ``[W]`` for all nodes).

        Returns ``x [n, W, n_features]``, ``y [n, W, horizon]`` normalized
        targets (residuals from the base forecast where there is one) and
        ``mask [n, W, horizon]``.
        """
        origins = per_node(origins, nodes)
        y = self._future(self.target, nodes, origins) - self.base(nodes, origins)
        mask = self._future(self.target_mask, nodes, origins)
        return self.inputs(nodes, origins), torch.where(mask, y, torch.zeros(())), mask

    def inputs(self, nodes: torch.Tensor, origins: torch.Tensor) -> torch.Tensor:
        """The inputs ``x [n, W, n_features]`` of the windows at ``origins``: readings up to each origin only, so
        an origin may be the file's last step (a forecast of what is not yet read)."""
        origins = per_node(origins, nodes)
        n, w = origins.shape
        past = origins[..., None] + torch.arange(-self.history + 1, 1)  # [n, W, history]
        channels = self.channels[nodes]  # [n, C, T]
        c = channels.shape[1]
        index = past.reshape(n, 1, w * self.history).expand(n, c, -1)
        inputs = channels.gather(2, index).reshape(n, c, w, self.history).permute(0, 2, 1, 3)
        parts = [inputs.reshape(n, w, c * self.history), self.calendar[origins]]
        if self.spec.seasonal:
            parts += [self._normalized(self.seasonal_naive(nodes, origins, lags)) for lags in SEASONAL.values()]
        if self.spec.profiles:
            parts += [self._normalized(self.profile(nodes, origins, name)) for name in PROFILES]
            parts += [self.profile_coverage(nodes, origins, name)[..., None] for name in PROFILES]
        return torch.cat(parts, dim=-1)

    def base(self, nodes: torch.Tensor, origins: torch.Tensor) -> torch.Tensor:
        """The normalized base forecast ``[n, W, horizon]`` the targets are residuals from (0 without a base)."""
        origins = per_node(origins, nodes)
        if self.spec.base is None:
            return torch.zeros(*origins.shape, self.horizon)
        return self._normalized(self.forecast(self.spec.base, nodes, origins))

    def forecast(self, base: str, nodes: torch.Tensor, origins: torch.Tensor) -> torch.Tensor:
        """The causal forecast ``base`` (one of :data:`BASES`) of the windows: ``[n, W, horizon]``, file's unit."""
        if base == "persistence":
            return self.persistence(nodes, origins)
        if base in PROFILES:
            return self.profile(nodes, origins, base)
        return self.seasonal_naive(nodes, origins, SEASONAL[base])

    def persistence(self, nodes: torch.Tensor, origins: torch.Tensor) -> torch.Tensor:
        """The last observed reading at the origin, for every target step: ``[n, W, horizon]``, file's unit."""
        origins = per_node(origins, nodes)
        last = self.last_observed[nodes].gather(1, origins)
        return last[..., None].expand(-1, -1, self.horizon)

    def seasonal_naive(
        self, nodes: torch.Tensor, origins: torch.Tensor, lag_days: int | tuple[int, ...]
    ) -> torch.Tensor:
        """The reading ``lag_days`` days before each target step: the same time of day, some days back.

        ``lag_days``: one lag, or seven by the target's weekday (Monday first).
        The lag is ``lag_days * data.steps_per_day`` steps. Where that reading
        is missing, lies before the first step, or lies after the origin (a lag
        shorter than the horizon), the forecast falls back to persistence.
        Returns ``[n, W, horizon]`` in the file's unit.
        """
        by_weekday = torch.tensor((lag_days,) * DAYS_PER_WEEK if isinstance(lag_days, int) else lag_days)
        origins = per_node(origins, nodes)
        n, w = origins.shape
        future = origins[..., None] + torch.arange(1, self.horizon + 1)  # [n, W, horizon]
        lag = by_weekday[self.weekday[future]] * self.data.steps_per_day
        lagged = (future - lag).reshape(n, -1)
        index = lagged.clamp(0, self.data.n_steps - 1)
        known = (lagged >= 0) & (lagged <= origins.repeat_interleave(self.horizon, 1))  # in the file, by the origin
        seen = self.target_mask[nodes].gather(1, index) & known
        readings = self.raw[nodes].gather(1, index)
        fallback = self.persistence(nodes, origins).reshape(n, -1)
        return torch.where(seen, readings, fallback).reshape(n, w, self.horizon)

    def profile(self, nodes: torch.Tensor, origins: torch.Tensor, name: str) -> torch.Tensor:
        """The sensor's mean reading at each target step's time of day or week (``name``, a key of
        :data:`PROFILES`), from readings at or before the origin: ``[n, W, horizon]``, file's unit.

        ``profile_day`` averages the same time of day over the last 7 days
        (persistence where none of them holds a reading); ``profile_week`` the
        same time of week over the last 4 weeks, shrunk toward the day
        profile, which counts as :data:`WEEK_PRIOR_WEEKS` weeks of readings.
        A target more than a period ahead starts its periods further back, so
        that nothing after the origin is read.
        """
        origins = per_node(origins, nodes)
        sums, counts = self._trailing_sums("profile_day", nodes, origins)
        day = torch.where(counts > 0, sums / counts.clamp(min=1), self.persistence(nodes, origins).double())
        if name == "profile_day":
            return day.float()
        if name != "profile_week":
            raise ConfigError(f"unknown profile {name!r}; expected one of {', '.join(PROFILES)}")
        sums, counts = self._trailing_sums(name, nodes, origins)
        return ((sums + WEEK_PRIOR_WEEKS * day) / (counts + WEEK_PRIOR_WEEKS)).float()

    def profile_coverage(self, nodes: torch.Tensor, origins: torch.Tensor, name: str) -> torch.Tensor:
        """``float32 [n, W]``: the share of the periods profile ``name`` averages that hold a reading at the
        first target step of each window (0 = the profile is only its fallback, 1 = every period seen)."""
        _, counts = self._trailing_sums(name, nodes, per_node(origins, nodes))
        return (counts[..., 0] / PROFILES[name][1]).float()

    def _trailing_sums(
        self, name: str, nodes: torch.Tensor, origins: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sums and counts ``float64 [n, W, horizon]`` of the observed readings profile ``name`` averages for
        each target step: the same step 1, 2, ... periods back, starting as many periods back as the target
        lies ahead of the origin (rounded up), so only readings at or before the origin count."""
        days, periods = PROFILES[name]
        period = days * self.data.steps_per_day
        lags = (torch.arange(1, self.horizon + 1) + period - 1) // period  # whole periods back, >= 1
        n, w = origins.shape
        future = (origins[..., None] + torch.arange(1, self.horizon + 1)).reshape(n, -1)
        sums = torch.zeros(n, w * self.horizon, dtype=torch.float64)
        counts = torch.zeros_like(sums)
        for lag in lags.unique().tolist():
            if (name, lag) not in self._trailing:
                observed = self.target_mask.double()
                self._trailing[name, lag] = (
                    _periodic_sums(self.raw.double() * observed, period, lag, periods, len(self.times)),
                    _periodic_sums(observed, period, lag, periods, len(self.times)),
                )
            lag_sums, lag_counts = (series[nodes].gather(1, future) for series in self._trailing[name, lag])
            at_lag = (lags == lag).repeat(w)
            sums = torch.where(at_lag, lag_sums, sums)
            counts = torch.where(at_lag, lag_counts, counts)
        return sums.reshape(n, w, self.horizon), counts.reshape(n, w, self.horizon)

    def truth(self, nodes: torch.Tensor, origins: torch.Tensor) -> torch.Tensor:
        """Readings in the file's unit at the targets of the windows, ``[n, W, horizon]`` (0 where missing)."""
        return self._future(self.raw, nodes, per_node(origins, nodes))

    def observed(self, nodes: torch.Tensor, origins: torch.Tensor) -> torch.Tensor:
        """``bool [n, W, horizon]``: whether a reading exists at each target of the windows."""
        return self._future(self.target_mask, nodes, per_node(origins, nodes))

    def readings(self, forecasts: torch.Tensor, nodes: torch.Tensor, origins: torch.Tensor) -> torch.Tensor:
        """A network's normalized ``forecasts [n, W, horizon]`` of the windows at ``origins`` in the file's unit:
        the base forecast added back, the normalization undone, clipped at 0 for non-negative readings."""
        readings = self.scaler.inverse_transform(forecasts + self.base(nodes, origins))
        return readings.clamp(min=0.0) if self.spec.nonnegative else readings

    def _normalized(self, readings: torch.Tensor) -> torch.Tensor:
        """Readings in the file's unit, normalized; NaN (no reading yet) becomes 0, the training mean."""
        return torch.nan_to_num(self.scaler.transform(readings), nan=0.0).float()

    def _future(self, series: torch.Tensor, nodes: torch.Tensor, origins: torch.Tensor) -> torch.Tensor:
        """``series [N, T]`` at steps ``origin + 1 .. origin + horizon`` of each window: ``[n, W, horizon]``."""
        n, w = origins.shape
        future = origins[..., None] + torch.arange(1, self.horizon + 1)
        return series[nodes].gather(1, future.reshape(n, w * self.horizon)).reshape(n, w, self.horizon)


def _periodic_sums(series: torch.Tensor, period: int, first: int, count: int, length: int) -> torch.Tensor:
    """``[N, length]``: at each step ``u``, the sum of ``series [N, T]`` at ``u - k * period`` for ``k = first ..
    first + count - 1`` (0 for steps outside the series; ``length`` may run past its end)."""
    n, steps = series.shape
    offset = (first + count) * period  # zero padding in front, so that every step has its periods behind it
    rows = -(-(offset + max(length, steps)) // period)
    padded = torch.zeros(n, rows * period, dtype=series.dtype)
    padded[:, offset : offset + steps] = series
    behind = padded.reshape(n, rows, period).cumsum(1).reshape(n, -1)  # sum at v, v - period, v - 2 period ...
    at = torch.arange(length) + offset
    return behind[:, at - first * period] - behind[:, at - offset]


def per_node(origins: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
    """Forecast origins per node: ``origins [W]`` shared by all ``nodes [N]`` -> ``[N, W]``; ``[N, W]`` as is."""
    return origins.expand(len(nodes), -1) if origins.dim() == 1 else origins
