"""The pattern classes of a sensor-day and the fixed rule that labels a profile with one (weak labels)."""

from __future__ import annotations

import numpy as np
import torch

from metamap.errors import ShapeError, describe

PATTERNS = ("free_flow", "morning_peak", "evening_peak", "both_peaks", "all_day_congestion")

# The labelling rule (hours of day; profile values are fractions of free flow).
CONGESTED = 0.7  # a bin is congested when its speed is below 70% of free flow
MORNING = (5.0, 12.0)  # the two halves of the waking day, split at noon
EVENING = (12.0, 21.0)
PEAK_HOURS = 1.0  # a sustained drop: at least this many congested hours in a half
DAYTIME = (6.0, 20.0)
ALL_DAY_FRACTION = 0.5  # all-day congestion: at least half of the daytime congested


def label_profiles(profiles: np.ndarray) -> np.ndarray:
    """Pattern of each sensor-day, as indices into :data:`PATTERNS` (weak labels).

    ``profiles [D, B]``: fractions of free-flow speed in B equal bins from
    midnight (B = 96 for 15-minute bins); NaN bins count as not congested.
    Returns ``int64 [D]``. The rule, in order:

    - ``all_day_congestion``: at least half of 06:00-20:00 congested (< 0.7);
    - ``both_peaks``: at least 1 congested hour in 05:00-12:00 and in 12:00-21:00;
    - ``morning_peak`` / ``evening_peak``: at least 1 congested hour in only
      the morning (05:00-12:00) / only the afternoon and evening (12:00-21:00);
    - ``free_flow``: otherwise (drops at night or shorter than an hour are not patterns).

    Thresholds were set on METR-LA (March 2012) so that every pattern has at
    least ~100 of its 1449 sensor-days.
    """
    profiles = np.asarray(profiles, dtype=np.float64)
    if profiles.ndim != 2 or profiles.shape[1] < 24:
        raise ShapeError(f"label_profiles: expected profiles [days, bins >= 24], got {describe(profiles)}")
    bin_hours = 24.0 / profiles.shape[1]
    starts = np.arange(profiles.shape[1]) * bin_hours
    congested = profiles < CONGESTED

    def hours_in(window: tuple[float, float]) -> np.ndarray:
        inside = (starts >= window[0]) & (starts < window[1])
        return congested[:, inside].sum(1) * bin_hours

    morning = hours_in(MORNING) >= PEAK_HOURS
    evening = hours_in(EVENING) >= PEAK_HOURS
    all_day = hours_in(DAYTIME) >= ALL_DAY_FRACTION * (DAYTIME[1] - DAYTIME[0])
    index = PATTERNS.index
    labels = np.select(
        [all_day, morning & evening, morning, evening],
        [index("all_day_congestion"), index("both_peaks"), index("morning_peak"), index("evening_peak")],
        default=index("free_flow"),
    )
    return labels.astype(np.int64)


def named_counts(counts: torch.Tensor | np.ndarray) -> dict[str, int]:
    """``{pattern name: count}`` from counts ``[len(PATTERNS)]`` indexed like :data:`PATTERNS`."""
    return {name: int(n) for name, n in zip(PATTERNS, counts)}
