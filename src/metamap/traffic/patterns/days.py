"""Sensor-days: one sensor's readings over one calendar day, as a profile of fractions of free-flow speed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metamap.errors import ConfigError, DataError
from metamap.traffic.data import TrafficData
from metamap.traffic.patterns.labels import PATTERNS, label_profiles, named_counts

FREE_FLOW_PERCENTILE = 95.0


@dataclass(frozen=True)
class SensorDays:
    """Whole-day profiles of one city's sensors (see :func:`sensor_days`).

    Attributes:
        profiles: ``float32 [D, B]`` mean observed speed per bin divided by
            ``free_flow``; NaN in a bin without readings.
        free_flow: ``float32 [D]`` free-flow speed of each sensor-day (the
            data's unit, mph for METR-LA/PeMS).
        sensor: ``int64 [D]`` the sensor's column in the TrafficData.
        day: ``datetime64[D] [D]`` the calendar day.
    """

    profiles: np.ndarray
    free_flow: np.ndarray
    sensor: np.ndarray
    day: np.ndarray

    def __len__(self) -> int:
        return int(self.profiles.shape[0])

    def filled(self) -> np.ndarray:
        """``float32 [D, B]``: profiles with empty bins interpolated linearly in time (ends held flat)."""
        filled = self.profiles.copy()
        for row in np.flatnonzero(np.isnan(filled).any(1)):
            known = ~np.isnan(filled[row])
            bins = np.arange(filled.shape[1])
            filled[row] = np.interp(bins, bins[known], filled[row, known])
        return filled

    def labels(self) -> np.ndarray:
        """``int64 [D]`` pattern indices from :func:`label_profiles`."""
        return label_profiles(self.profiles)


def sensor_days(data: TrafficData, *, bin_minutes: int = 15, max_missing: float = 0.2) -> SensorDays:
    """Cut every sensor's series into whole calendar days and normalise them.

    Days start at the first midnight in ``data.times``; a trailing part day is
    dropped. A sensor-day with more than ``max_missing`` (fraction) of its
    steps missing is skipped. Readings are averaged over ``bin_minutes``
    (a multiple of ``data.step_minutes``) and divided by the sensor-day's
    free-flow speed. Raises DataError when no whole day or no sensor-day is left.
    """
    if bin_minutes % data.step_minutes or (24 * 60) % bin_minutes:
        raise ConfigError(
            f"bin_minutes={bin_minutes} must be a multiple of the data's {data.step_minutes}-minute step "
            "and divide a day"
        )
    per_day = data.steps_per_day
    start = _first_midnight(data.times)
    n_days = (data.n_steps - start) // per_day
    if n_days < 1:
        raise DataError(
            f"{data.name}: need at least one whole calendar day ({per_day} steps of {data.step_minutes} min "
            f"from a midnight); its {data.n_steps} steps hold none"
        )
    stop = start + n_days * per_day
    speed = np.where(data.mask[start:stop], data.values[start:stop], np.nan)
    speed = speed.reshape(n_days, per_day, data.n_sensors).transpose(2, 0, 1).reshape(-1, per_day)
    rows = np.flatnonzero(np.isnan(speed).mean(1) <= max_missing)
    free_flow = np.nanpercentile(speed[rows], FREE_FLOW_PERCENTILE, axis=1)
    rows, free_flow = rows[free_flow > 0], free_flow[free_flow > 0]
    if rows.size == 0:
        raise DataError(
            f"{data.name}: no sensor-day has at most {max_missing:.0%} of its steps missing "
            f"({data.n_sensors} sensors x {n_days} whole days)"
        )
    binned = _bin_means(speed[rows], bin_minutes // data.step_minutes)
    days = data.times[start:stop:per_day].astype("datetime64[D]")
    return SensorDays(
        profiles=(binned / free_flow[:, None]).astype(np.float32),
        free_flow=free_flow.astype(np.float32),
        sensor=(rows // n_days).astype(np.int64),
        day=days[rows % n_days],
    )


def _first_midnight(times: np.ndarray) -> int:
    """Index of the first time stamp at 00:00 (``len(times)`` when there is none)."""
    midnight = times == times.astype("datetime64[D]")
    found = np.flatnonzero(midnight)
    return int(found[0]) if found.size else len(times)


def _bin_means(speed: np.ndarray, per_bin: int) -> np.ndarray:
    """``[D, steps]`` with NaN gaps -> ``[D, steps // per_bin]`` means of the readings in each bin (NaN if none)."""
    observed = ~np.isnan(speed)
    shape = (speed.shape[0], -1, per_bin)
    total = np.where(observed, speed, 0.0).reshape(shape).sum(2)
    count = observed.reshape(shape).sum(2)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def class_counts(days: SensorDays) -> dict[str, int]:
    """Number of sensor-days of each pattern, by name."""
    return named_counts(np.bincount(days.labels(), minlength=len(PATTERNS)))
