"""Sensor-days: one sensor's readings over one calendar day, as a profile of fractions of its high level.

A profile is divided by the sensor-day's 95th percentile reading: for speeds
that is the free-flow speed (1 = free flow), for counts and flows the day's
busy level (1 = as busy as the day gets). Either way profiles of different
roads and cities are comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metamap.errors import ConfigError, DataError
from metamap.traffic.data import TrafficData
from metamap.traffic.patterns.labels import Labelling, named_counts

SCALE_PERCENTILE = 95.0
MIN_BINS = 24  # bins per day: the speed rule reads hours, the profile encoder halves them twice


@dataclass(frozen=True)
class SensorDays:
    """Whole-day profiles of one city's sensors (see :func:`sensor_days`).

    Attributes:
        profiles: ``float32 [D, B]`` mean observed reading per bin divided by
            ``scale``; NaN in a bin without readings.
        scale: ``float32 [D]`` the 95th percentile reading of each sensor-day
            (the data's unit; the free-flow speed for speeds).
        sensor: ``int64 [D]`` the sensor's column in the TrafficData.
        day: ``datetime64[D] [D]`` the calendar day.
    """

    profiles: np.ndarray
    scale: np.ndarray
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


def default_bin_minutes(step_minutes: int) -> int:
    """The profile bin for data of ``step_minutes``: 15 minutes, or the step where it is longer."""
    return 15 if 15 % step_minutes == 0 else step_minutes


def sensor_days(data: TrafficData, *, bin_minutes: int | None = None, max_missing: float = 0.2) -> SensorDays:
    """Cut every sensor's series into whole calendar days and normalise them.

    Days start at the first midnight in ``data.times``; a trailing part day is
    dropped. A sensor-day with more than ``max_missing`` (fraction) of its
    steps missing is skipped. Readings are averaged over ``bin_minutes``
    (a multiple of ``data.step_minutes``; default :func:`default_bin_minutes`)
    and divided by the sensor-day's 95th percentile. A day needs at least
    :data:`MIN_BINS` bins, a multiple of 4 (hourly data or finer). Raises
    ConfigError for such a bin, DataError when no whole day or no sensor-day is left.
    """
    if bin_minutes is None:
        bin_minutes = default_bin_minutes(data.step_minutes)
    if bin_minutes % data.step_minutes or (24 * 60) % bin_minutes:
        raise ConfigError(
            f"--bin {bin_minutes}min must be a multiple of the data's {data.step_minutes}-minute step and divide a day"
        )
    bins = 24 * 60 // bin_minutes
    if bins < MIN_BINS or bins % 4:
        raise ConfigError(
            f"daily profiles need at least {MIN_BINS} bins a day, a multiple of 4 (a bin of 1h or less), "
            f"got {bins} bins of {bin_minutes} min"
            + (f" ({data.step_minutes}-minute data is too coarse)" if data.step_minutes > 60 else "")
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
    readings = np.where(data.mask[start:stop], data.values[start:stop], np.nan)
    readings = readings.reshape(n_days, per_day, data.n_sensors).transpose(2, 0, 1).reshape(-1, per_day)
    rows = np.flatnonzero(np.isnan(readings).mean(1) <= max_missing)
    scale = np.nanpercentile(readings[rows], SCALE_PERCENTILE, axis=1)
    rows, scale = rows[scale > 0], scale[scale > 0]
    if rows.size == 0:
        raise DataError(
            f"{data.name}: no sensor-day has at most {max_missing:.0%} of its steps missing "
            f"({data.n_sensors} sensors x {n_days} whole days)"
        )
    binned = _bin_means(readings[rows], bin_minutes // data.step_minutes)
    days = data.times[start:stop:per_day].astype("datetime64[D]")
    return SensorDays(
        profiles=(binned / scale[:, None]).astype(np.float32),
        scale=scale.astype(np.float32),
        sensor=(rows // n_days).astype(np.int64),
        day=days[rows % n_days],
    )


def _first_midnight(times: np.ndarray) -> int:
    """Index of the first time stamp at 00:00 (``len(times)`` when there is none)."""
    midnight = times == times.astype("datetime64[D]")
    found = np.flatnonzero(midnight)
    return int(found[0]) if found.size else len(times)


def _bin_means(readings: np.ndarray, per_bin: int) -> np.ndarray:
    """``[D, steps]`` with NaN gaps -> ``[D, steps // per_bin]`` means of the readings in each bin (NaN if none)."""
    observed = ~np.isnan(readings)
    shape = (readings.shape[0], -1, per_bin)
    total = np.where(observed, readings, 0.0).reshape(shape).sum(2)
    count = observed.reshape(shape).sum(2)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def class_counts(labels: np.ndarray, labelling: Labelling) -> dict[str, int]:
    """Number of sensor-days of each pattern of ``labelling``, by name (``labels int64 [D]``)."""
    return named_counts(np.bincount(labels, minlength=len(labelling.names)), labelling.names)
