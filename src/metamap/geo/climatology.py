"""A seasonal climatology: harmonics of the time of year fitted per pixel by least squares.

The time of year is the fraction ``f in [0, 1)`` of the calendar's year
(:func:`year_fraction`): days (and the time of day) since 1 January divided
by the length of that year in that calendar, 360 on ``360_day``, 365 on
``noleap``, 366 on ``all_leap``, 365 or 366 on ``standard`` / ``julian``.
The climatology of one pixel is

    c(f) = a0 + sum_k (a_k cos(2 pi k f) + b_k sin(2 pi k f)),  k = 1..K

fitted on the training times only, NaN (missing) excluded. ``K`` defaults to
3 (annual, half-year and third-of-a-year cycles: enough for the asymmetric
shape of a daily temperature or rain year, few enough to stay stable on one
year of data), reduced by :func:`auto_harmonics` when the training times do
not cover the year: a file of one month gets ``K = 0``, the mean of its
training times, because a yearly cycle cannot be told from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metamap.errors import DataError, ShapeError, describe

MAX_HARMONICS = 3
FIXED_YEARS = {"360_day": 360.0, "noleap": 365.0, "365_day": 365.0, "all_leap": 366.0, "366_day": 366.0}
LEAP_RULES = ("standard", "gregorian", "proleptic_gregorian", "julian")


def _is_leap(year: int, calendar: str) -> bool:
    if calendar == "julian":
        return year % 4 == 0
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def year_fraction(times: np.ndarray, calendar: str) -> np.ndarray:
    """Fraction of the year ``[T]`` in ``[0, 1)`` of each time stamp.

    ``times``: numpy ``datetime64`` values or cftime dates (anything with
    ``year``, ``dayofyr``, ``hour``, ``minute``, ``second``); ``calendar``:
    a CF calendar name (see module docstring). Raises DataError for times
    that are not dates or an unknown calendar.
    """
    times = np.asarray(times)
    calendar = str(calendar).strip().lower()
    if np.issubdtype(times.dtype, np.datetime64):
        years = times.astype("datetime64[Y]")
        seconds = (times - years).astype("timedelta64[s]").astype(np.float64)
        year_numbers = years.astype(np.int64) + 1970
        if calendar in FIXED_YEARS:
            raise DataError(f"numpy dates cannot be on the {calendar!r} calendar; expected cftime dates")
        lengths = np.array([366.0 if _is_leap(int(y), "standard") else 365.0 for y in year_numbers])
        return np.clip(seconds / 86400.0 / lengths, 0.0, np.nextafter(1.0, 0.0))
    if times.dtype != object or not all(hasattr(t, "dayofyr") for t in times.ravel()):
        raise DataError(f"the time axis holds {times.dtype}, not dates; cannot place the times in the year")
    if calendar in FIXED_YEARS:
        lengths = np.full(times.shape, FIXED_YEARS[calendar])
    elif calendar in LEAP_RULES:
        lengths = np.array([366.0 if _is_leap(int(t.year), calendar) else 365.0 for t in times.ravel()])
    else:
        raise DataError(f"unknown calendar {calendar!r}; expected one of {', '.join([*FIXED_YEARS, *LEAP_RULES])}")
    days = np.array(
        [t.dayofyr - 1 + (t.hour * 3600 + t.minute * 60 + t.second) / 86400.0 for t in times.ravel()], np.float64
    )
    return np.clip(days / lengths.ravel(), 0.0, np.nextafter(1.0, 0.0)).reshape(times.shape)


def harmonic_design(fraction: np.ndarray, harmonics: int) -> np.ndarray:
    """Regressors ``[T, 1 + 2K]``: 1, then ``cos(2 pi k f), sin(2 pi k f)`` for ``k = 1..K``."""
    angle = 2 * np.pi * np.asarray(fraction, np.float64)[:, None] * np.arange(1, harmonics + 1)[None, :]
    columns = [np.ones((angle.shape[0], 1))]
    for k in range(harmonics):
        columns += [np.cos(angle[:, k : k + 1]), np.sin(angle[:, k : k + 1])]
    return np.concatenate(columns, axis=1)


def largest_gap(fraction: np.ndarray) -> float:
    """Longest stretch of the (circular) year without a time in ``fraction``, as a fraction of the year."""
    points = np.unique(np.asarray(fraction, np.float64))
    if points.size == 0:
        return 1.0
    return float(np.diff(np.concatenate([points, points[:1] + 1.0])).max())


def auto_harmonics(fraction: np.ndarray, max_harmonics: int = MAX_HARMONICS) -> int:
    """The largest ``K <= max_harmonics`` whose shortest period is sampled: no gap in the training times'
    year longer than a quarter of a year / K (one year of daily data: 3; one month: 0, the mean)."""
    gap = largest_gap(fraction)
    return max([k for k in range(max_harmonics + 1) if k == 0 or gap <= 1.0 / (4 * k)])


@dataclass
class SeasonalClimatology:
    """Per-pixel harmonic climatology: ``coefficients [1 + 2K, H, W]`` in the field's unit (after any value
    transform), ``harmonics`` K. Pixels without enough valid times for the fit keep their mean (or 0 if never
    valid)."""

    coefficients: np.ndarray
    harmonics: int

    @classmethod
    def fit(cls, values: np.ndarray, fraction: np.ndarray, harmonics: int | None = None) -> SeasonalClimatology:
        """Least-squares fit on ``values [T, H, W]`` (NaN = missing) at year fractions ``fraction [T]``;
        ``harmonics`` None picks :func:`auto_harmonics` from ``fraction``."""
        values = np.asarray(values, np.float64)
        fraction = np.asarray(fraction, np.float64)
        if values.ndim != 3 or fraction.shape != values.shape[:1]:
            raise ShapeError(
                f"expected values [T, H, W] and fraction [T]; got {describe(values)}, {describe(fraction)}"
            )
        if values.shape[0] == 0:
            raise DataError("no training times to fit a climatology on")
        k = auto_harmonics(fraction) if harmonics is None else int(harmonics)
        if k < 0:
            raise DataError(f"the number of harmonics must be >= 0, got {k}")
        design = harmonic_design(fraction, k)  # [T, P]
        valid = np.isfinite(values)
        clean = np.where(valid, values, 0.0)
        gram = np.einsum("thw,tp,tq->hwpq", valid.astype(np.float64), design, design)
        rhs = np.einsum("thw,tp->hwp", clean, design)
        count = valid.sum(axis=0)
        n_par = design.shape[1]
        coefficients = np.zeros((n_par, *values.shape[1:]))
        mean = clean.sum(axis=0) / np.maximum(count, 1)
        coefficients[0] = mean
        enough = count >= 2 * n_par
        if k > 0 and enough.any():
            conditioned = np.linalg.cond(gram[enough]) < 1e8
            rows, cols = np.nonzero(enough)
            rows, cols = rows[conditioned], cols[conditioned]
            solved = np.linalg.solve(gram[rows, cols], rhs[rows, cols][..., None])[..., 0]
            coefficients[:, rows, cols] = solved.T
        return cls(coefficients=coefficients, harmonics=k)

    def predict(self, fraction: np.ndarray) -> np.ndarray:
        """The climatology ``[T, H, W]`` (float64) at year fractions ``fraction [T]``."""
        design = harmonic_design(np.atleast_1d(np.asarray(fraction, np.float64)), self.harmonics)
        return np.einsum("tp,phw->thw", design, self.coefficients)
