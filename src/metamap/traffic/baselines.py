"""The profile forecasts every table shows beside the learned ones: historical averages.

Both work in the data's unit on windows ``[n, W]`` of
:class:`~metamap.traffic.features.SeriesFeatures` and return ``[n, W, horizon]``.
Time-of-day and time-of-week slots are counted in the data's own steps
(``data.steps_per_day``), so hourly and 5-minute files both work. The causal
forecasts (persistence, seasonal naive) are methods of ``SeriesFeatures``: the
windows are built on them.
"""

from __future__ import annotations

import torch

from metamap.traffic.features import DAYS_PER_WEEK, SeriesFeatures, minutes_of_day, per_node, weekdays


def historical_average(
    features: SeriesFeatures, nodes: torch.Tensor, support: tuple[int, int], origins: torch.Tensor
) -> torch.Tensor:
    """Mean of the sensor's own support readings at the same time of day.

    Slots the support period never saw (a support shorter than a day) take
    the mean of all the sensor's support readings.
    """
    slots = _slots(features)
    values, valid = _support_readings(features, nodes, support)
    profile = _time_of_day_profile(values, valid, slots[slice(*support)], features.data.steps_per_day)
    return _at_targets(profile, slots, origins, nodes, features.horizon)


def historical_average_week(
    features: SeriesFeatures, nodes: torch.Tensor, support: tuple[int, int], origins: torch.Tensor
) -> torch.Tensor:
    """Mean of the sensor's own support readings at the same time of week (``7 * steps_per_day`` slots).

    Slots the support period never saw (a support shorter than a week) take
    the time-of-day mean of :func:`historical_average`.
    """
    per_day = features.data.steps_per_day
    values, valid = _support_readings(features, nodes, support)
    by_day = _time_of_day_profile(values, valid, _slots(features)[slice(*support)], per_day)  # [n, per_day]
    fallback = by_day.repeat(1, DAYS_PER_WEEK)  # [n, 7 * per_day]: slot s falls back to time of day s % per_day
    week_slots = _week_slots(features)
    profile = _slot_means(values, valid, week_slots[slice(*support)], DAYS_PER_WEEK * per_day, fallback)
    return _at_targets(profile, week_slots, origins, nodes, features.horizon)


def _support_readings(
    features: SeriesFeatures, nodes: torch.Tensor, support: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``float64 [n, S]`` readings of ``nodes`` over the support steps and ``float64 [n, S]`` 1 = observed."""
    start, stop = support
    return features.raw[nodes][:, start:stop].double(), features.target_mask[nodes][:, start:stop].double()


def _time_of_day_profile(
    values: torch.Tensor, valid: torch.Tensor, slot_of: torch.Tensor, per_day: int
) -> torch.Tensor:
    """``float64 [n, per_day]``: support means by time of day (``slot_of [S]``); the overall mean where unseen."""
    overall = (values * valid).sum(1, keepdim=True) / valid.sum(1, keepdim=True).clamp(min=1)
    return _slot_means(values, valid, slot_of, per_day, overall.expand(-1, per_day))


def _slot_means(
    values: torch.Tensor, valid: torch.Tensor, slot_of: torch.Tensor, n_slots: int, fallback: torch.Tensor
) -> torch.Tensor:
    """``float64 [n, n_slots]``: mean observed reading per slot (``slot_of [S]`` of each step), ``fallback`` where none."""
    n = len(values)
    sums = torch.zeros(n, n_slots, dtype=torch.float64).index_add_(1, slot_of, values * valid)
    counts = torch.zeros(n, n_slots, dtype=torch.float64).index_add_(1, slot_of, valid)
    return torch.where(counts > 0, sums / counts.clamp(min=1), fallback)


def _at_targets(
    profile: torch.Tensor, slots: torch.Tensor, origins: torch.Tensor, nodes: torch.Tensor, horizon: int
) -> torch.Tensor:
    """``profile [n, n_slots]`` read at the slot of each window's targets: float32 ``[n, W, horizon]``."""
    origins = per_node(origins, nodes)
    future = origins[..., None] + torch.arange(1, horizon + 1)
    n, w = origins.shape
    return profile.gather(1, slots[future].reshape(n, -1)).reshape(n, w, horizon).float()


def _slots(features: SeriesFeatures) -> torch.Tensor:
    """Time-of-day slot ``[T + horizon]`` of each step and of the steps after the file (0 .. steps_per_day - 1)."""
    return torch.from_numpy(minutes_of_day(features.times) // features.data.step_minutes)


def _week_slots(features: SeriesFeatures) -> torch.Tensor:
    """Time-of-week slot ``[T + horizon]``: ``weekday * steps_per_day + time-of-day slot`` (Monday = 0)."""
    return torch.from_numpy(weekdays(features.times)) * features.data.steps_per_day + _slots(features)
