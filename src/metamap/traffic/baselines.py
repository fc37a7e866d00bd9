"""The simple forecasts every table shows beside the learned ones.

Both work in the data's unit (mph) on windows ``[n, W]`` of
:class:`~metamap.traffic.features.SeriesFeatures` and return ``[n, W, 12]``.
"""

from __future__ import annotations

import torch

from metamap.traffic.data import TrafficData
from metamap.traffic.features import HORIZON, SeriesFeatures, minutes_of_day, per_node


def persistence(features: SeriesFeatures, nodes: torch.Tensor, origins: torch.Tensor) -> torch.Tensor:
    """The last observed reading at the origin, for every horizon."""
    origins = per_node(origins, nodes)
    last = features.last_observed[nodes].gather(1, origins)
    return last[..., None].expand(-1, -1, HORIZON)


def historical_average(
    features: SeriesFeatures, nodes: torch.Tensor, support: tuple[int, int], origins: torch.Tensor
) -> torch.Tensor:
    """Mean of the sensor's own support readings at the same time of day (5-min slot).

    Slots the support period never saw (a support shorter than a day) take
    the mean of all the sensor's support readings.
    """
    data = features.data
    per_day = data.steps_per_day
    start, stop = support
    slots = _slots(data)
    values = features.raw[nodes][:, start:stop].double()
    valid = features.target_mask[nodes][:, start:stop].double()
    slot_of = slots[start:stop]
    sums = torch.zeros(len(nodes), per_day, dtype=torch.float64).index_add_(1, slot_of, values * valid)
    counts = torch.zeros(len(nodes), per_day, dtype=torch.float64).index_add_(1, slot_of, valid)
    overall = (values * valid).sum(1, keepdim=True) / valid.sum(1, keepdim=True).clamp(min=1)
    profile = torch.where(counts > 0, sums / counts.clamp(min=1), overall)  # [n, per_day]
    origins = per_node(origins, nodes)
    future = origins[..., None] + torch.arange(1, HORIZON + 1)
    n, w = origins.shape
    return profile.gather(1, slots[future].reshape(n, -1)).reshape(n, w, HORIZON).float()


def _slots(data: TrafficData) -> torch.Tensor:
    """Time-of-day slot ``[T]`` of each step (0 .. steps_per_day - 1)."""
    return torch.from_numpy(minutes_of_day(data.times) // data.step_minutes)
