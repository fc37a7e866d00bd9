"""How sensor-days get their weak pattern labels: the speed rule, or clusters (:mod:`.clusters`).

A *labelling* is any object with the :class:`Labelling` shape: pattern
``names``, a ``label(profiles)`` function, what its profiles' values mean
(``profile_axis``), an optional threshold to draw, and a JSON summary. Every
part of the patterns study takes one, so that speeds, counts and flows each get
patterns that mean something for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from metamap.errors import ShapeError, describe


class Labelling(Protocol):
    """Weak pattern labels of sensor-day profiles (see the module docstring)."""

    @property
    def names(self) -> tuple[str, ...]:
        """The patterns, indexed like the labels."""
        ...

    @property
    def profile_axis(self) -> str:
        """What a profile's values are, for plot axes."""
        ...

    @property
    def threshold(self) -> float | None:
        """A profile level the labels depend on (drawn in plots), or None."""
        ...

    def label(self, profiles: np.ndarray) -> np.ndarray:
        """``int64 [D]`` indices into :attr:`names` of profiles ``[D, B]`` (NaN where a bin has no reading)."""
        ...

    def summary(self) -> dict[str, Any]:
        """What the labels are, for the run's JSON."""
        ...


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


class SpeedRule:
    """:func:`label_profiles` as a :class:`Labelling`: meant for speeds divided by free flow."""

    names: tuple[str, ...] = PATTERNS
    profile_axis: str = "speed / free flow"
    threshold: float | None = CONGESTED

    def label(self, profiles: np.ndarray) -> np.ndarray:
        return label_profiles(profiles)

    def summary(self) -> dict[str, Any]:
        return {
            "kind": "rule",
            "patterns": list(PATTERNS),
            "note": "weak: the rule of metamap.traffic.patterns.label_profiles (speeds), not ground truth",
        }


def named_counts(counts: torch.Tensor | np.ndarray, names: Sequence[str] = PATTERNS) -> dict[str, int]:
    """``{pattern name: count}`` from counts ``[len(names)]`` indexed like ``names``."""
    return {name: int(n) for name, n in zip(names, counts)}
