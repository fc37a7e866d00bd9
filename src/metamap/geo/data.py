"""The training scan, static channels, and lazy random patches from a (dask-backed) field.

Fields enter the model space of :mod:`metamap.geo.anomaly` (value
transform, seasonal climatology, one standard deviation of the anomalies),
fitted on the training times only (NaN = missing, masked out), never
clipped. Static conditioning
channels are latitude and longitude scaled to [-1, 1] over the whole grid, so
a patch knows where it lies. :class:`PatchSource` draws random
``[B, n_times, h, w]`` space-time patches by reading only the chunks that the
patches touch, so memory stays bounded by the batch, not by the grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from metamap.errors import ConfigError, DataError
from metamap.geo.anomaly import FieldScaler, field_fraction
from metamap.geo.io import GeoField
from metamap.geo.transforms import ValueTransform


def scan_training(
    field: GeoField, times: np.ndarray, transform: ValueTransform, max_times: int = 128, seed: int = 0
) -> tuple[FieldScaler, np.ndarray]:
    """The model space (:class:`metamap.geo.anomaly.FieldScaler`) and ``never_valid [H, W]`` (NaN at every
    scanned time) from training time indices ``times``.

    At most ``max_times`` of them (drawn with ``seed``, spread over the
    training period) are read, so memory stays at ``max_times`` fields. Training data with
    fewer than two finite values or without variation are refused (DataError).
    """
    times = np.asarray(times)
    if times.size == 0:
        raise DataError(f"{field.var}: no training time steps to standardize with")
    if times.size > max_times:
        times = np.sort(np.random.default_rng(seed).choice(times, size=max_times, replace=False))
    values = np.stack([np.asarray(field.data.isel(time=int(index)).values, np.float32) for index in times])
    scaler = FieldScaler.fit(values, field_fraction(field)[times], transform, field.var)
    never_valid = np.asarray(~np.isfinite(values).any(axis=0), bool)
    return scaler, never_valid


def static_channels(
    lat: np.ndarray, lon: np.ndarray, lat_range: tuple[float, float], lon_range: tuple[float, float]
) -> np.ndarray:
    """Latitude and longitude scaled to [-1, 1] over the full grid's ranges: ``[2, H, W]`` float32."""

    def scale(values: np.ndarray, low: float, high: float) -> np.ndarray:
        return (2 * (np.asarray(values, np.float64) - low) / max(high - low, 1e-9) - 1).astype(np.float32)

    lat_s, lon_s = scale(lat, *lat_range), scale(lon, *lon_range)
    return np.stack(np.broadcast_arrays(lat_s[:, None], lon_s[None, :])).astype(np.float32)


def grid_ranges(field: GeoField) -> tuple[tuple[float, float], tuple[float, float]]:
    """``((lat_min, lat_max), (lon_min, lon_max))`` of the whole grid."""
    return (float(field.lat.min()), float(field.lat.max())), (float(field.lon.min()), float(field.lon.max()))


@dataclass
class Patches:
    """A batch of space-time patches: ``values [B, n_times, h, w]`` in model space (NaN kept),
    ``static [B, 2, h, w]`` and ``origin [B, 3]`` (first time index, first row, first column)."""

    values: torch.Tensor
    static: torch.Tensor
    origin: torch.Tensor


class PatchSource:
    """Random space-time patches of a :class:`GeoField`, read lazily (only the touched chunks are loaded).

    ``times``: the time indices a patch may start from (e.g. the training
    days); a patch covers ``n_times`` consecutive steps from its start.
    ``patch``: ``(h, w)``, clipped to the grid. Randomness from ``seed``.
    """

    def __init__(
        self,
        field: GeoField,
        scaler: FieldScaler,
        times: np.ndarray,
        patch: tuple[int, int],
        n_times: int = 1,
        seed: int = 0,
    ) -> None:
        _, height, width = field.shape
        self.field, self.scaler, self.n_times = field, scaler, n_times
        self.fraction = field_fraction(field)
        self.patch = (min(patch[0], height), min(patch[1], width))
        times = np.asarray(times, dtype=np.int64)
        starts = times[np.isin(times + n_times - 1, times)]
        if starts.size == 0:
            raise DataError(f"{field.var}: no run of {n_times} consecutive time steps in the chosen times")
        self.starts = starts
        self.rng = np.random.default_rng(seed)
        self.lat, self.lon = field.lat, field.lon
        self.lat_range, self.lon_range = grid_ranges(field)

    def sample(self, batch: int) -> Patches:
        """Draw ``batch`` patches."""
        (h, w), (_, height, width) = self.patch, self.field.shape
        values, static, origin = [], [], []
        for _ in range(batch):
            start = int(self.rng.choice(self.starts))
            i, j = int(self.rng.integers(0, height - h + 1)), int(self.rng.integers(0, width - w + 1))
            block = self.field.data.isel(
                time=slice(start, start + self.n_times), lat=slice(i, i + h), lon=slice(j, j + w)
            )
            window = (slice(i, i + h), slice(j, j + w))
            fraction = self.fraction[start : start + self.n_times]
            values.append(self.scaler.to_model(np.asarray(block.values, np.float32), fraction, window))
            static.append(static_channels(self.lat[i : i + h], self.lon[j : j + w], self.lat_range, self.lon_range))
            origin.append((start, i, j))
        return Patches(torch.from_numpy(np.stack(values)), torch.from_numpy(np.stack(static)), torch.tensor(origin))


def check_patch(patch: int | tuple[int, int]) -> tuple[int, int]:
    """``64`` or ``(48, 64)`` -> a (h, w) pair of positive ints."""
    pair = (patch, patch) if isinstance(patch, int) else tuple(patch)
    if len(pair) != 2 or min(pair) < 4:
        raise ConfigError(f"patch must be one or two sizes >= 4, got {patch!r}")
    return int(pair[0]), int(pair[1])
