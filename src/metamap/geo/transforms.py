"""Per-variable value transforms: non-negative, zero-inflated fields (precipitation) modelled in a
transformed space and returned non-negative with dry pixels dry.

A :class:`ValueTransform` maps a field in its file's unit to the space that
climatology, kriging and models work in, and back. ``none`` is the identity.
``log1p`` is ``log(1 + x in mm/day)`` and ``power`` is ``(x in mm/day) ** (1/3)``;
both compress the long wet tail. Their inverse clips at 0 and sets every pixel
below the dry threshold (0.1 mm/day, the usual wet-day limit is 1 mm/day; 0.1
keeps drizzle) to exactly 0, so a fill has no negative values and dry pixels
stay dry. :func:`choose_transform` picks ``log1p`` for precipitation (units of
a rate or an amount per day, or a ``standard_name`` with ``precipitation``)
and ``none`` for anything else, unless told otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from metamap.errors import ConfigError

KINDS = ("none", "log1p", "power")
DRY_MM_PER_DAY = 0.1
PER_SECOND_UNITS = ("kg m-2 s-1", "kg m**-2 s**-1", "kg/m2/s", "kg m^-2 s^-1", "mm s-1", "mm/s", "mm s**-1")
PER_DAY_UNITS = ("mm day-1", "mm/day", "mm d-1", "mm/d", "mm day**-1", "kg m-2 day-1", "kg m-2 d-1")


def _normalise_units(units: str) -> str:
    return " ".join(str(units).strip().lower().split())


def mm_per_day_factor(units: str) -> float | None:
    """The factor from ``units`` to mm/day (86400 for ``kg m-2 s-1`` / ``mm s-1``, 1 for ``mm/day``), or
    None for units that are not a precipitation rate."""
    units = _normalise_units(units)
    if units in PER_SECOND_UNITS:
        return 86400.0
    if units in PER_DAY_UNITS:
        return 1.0
    return None


@dataclass(frozen=True)
class ValueTransform:
    """``kind`` (``none`` | ``log1p`` | ``power``) and ``to_mm_per_day``, the factor from the file's unit to
    mm/day (1 for ``none``)."""

    kind: str = "none"
    to_mm_per_day: float = 1.0

    @property
    def nonnegative(self) -> bool:
        """True when outputs are clipped at 0 with dry pixels dry."""
        return self.kind != "none"

    @property
    def dry_threshold(self) -> float:
        """The dry limit in the file's unit (0 for ``none``)."""
        return DRY_MM_PER_DAY / self.to_mm_per_day if self.nonnegative else 0.0

    def forward(self, values: np.ndarray) -> np.ndarray:
        """File unit -> modelling space, same shape; NaN kept, negative inputs read as 0."""
        values = np.asarray(values)
        if self.kind == "none":
            return values
        amount = np.maximum(values * self.to_mm_per_day, 0.0)
        return np.log1p(amount) if self.kind == "log1p" else np.cbrt(amount)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """Modelling space -> file unit, same shape; for a non-negative kind >= 0 with values below the dry
        threshold set to exactly 0 (NaN kept)."""
        values = np.asarray(values)
        if self.kind == "none":
            return values
        amount = np.expm1(np.maximum(values, 0.0)) if self.kind == "log1p" else np.maximum(values, 0.0) ** 3
        return np.where(amount < DRY_MM_PER_DAY, 0.0, amount / self.to_mm_per_day).astype(values.dtype)

    def to_json(self) -> dict[str, Any]:
        """``{"kind", "to_mm_per_day"}`` for a run's metadata."""
        return {"kind": self.kind, "to_mm_per_day": self.to_mm_per_day}


def is_precipitation(attrs: dict[str, Any]) -> bool:
    """True when a variable's attributes say precipitation: a rate unit of :func:`mm_per_day_factor` or a
    ``standard_name`` containing ``precipitation``."""
    standard = str(attrs.get("standard_name", "")).lower()
    return "precipitation" in standard or mm_per_day_factor(str(attrs.get("units", ""))) is not None


def choose_transform(attrs: dict[str, Any], requested: str = "auto") -> ValueTransform:
    """The transform for a variable with attributes ``attrs``: ``requested`` one of ``auto`` (``log1p`` for
    precipitation, else ``none``) or :data:`KINDS`. A non-negative kind needs units convertible to mm/day."""
    if requested not in ("auto", *KINDS):
        raise ConfigError(f"--transform must be auto or one of {', '.join(KINDS)}, got {requested!r}")
    kind = ("log1p" if is_precipitation(attrs) else "none") if requested == "auto" else requested
    if kind == "none":
        return ValueTransform()
    factor = mm_per_day_factor(str(attrs.get("units", "")))
    if factor is None:
        raise ConfigError(
            f"the {kind} transform needs precipitation units (e.g. kg m-2 s-1, mm/day), got {attrs.get('units')!r}"
        )
    return ValueTransform(kind, factor)


def fraction_negative(values: np.ndarray) -> float:
    """Fraction of the finite values below 0."""
    values = np.asarray(values)
    finite = np.isfinite(values)
    return float((values[finite] < 0).mean()) if finite.any() else 0.0


def dry_accuracy(predicted: np.ndarray, truth: np.ndarray, threshold: float) -> float:
    """Fraction of pixels (finite in both) where ``predicted`` and ``truth`` agree on dry (``< threshold``)
    versus wet; NaN when there are none."""
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    both = np.isfinite(predicted) & np.isfinite(truth)
    if not both.any():
        return float("nan")
    return float(((predicted[both] < threshold) == (truth[both] < threshold)).mean())
