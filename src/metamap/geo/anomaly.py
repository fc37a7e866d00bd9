"""The model space of a geo run: ``z = (T(x) - c(f) - m) / s`` and back, fitted on training times only.

``T`` is the variable's value transform (:mod:`metamap.geo.transforms`:
identity for temperature, ``log1p`` for precipitation), ``c(f)`` the
per-pixel harmonic climatology at the time of year ``f``
(:mod:`metamap.geo.climatology`) fitted on the transformed training fields,
and ``m [H, W]``, ``s`` a :class:`metamap.preprocessing.Standardizer` of the
anomalies ``T(x) - c(f)`` (per-pixel mean, one standard deviation). The way
back clips and dries a non-negative variable (no negative rain, dry pixels
exactly 0). Files whose times are not dates get ``K = 0`` harmonics (the
training mean) at ``f = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metamap.errors import DataError
from metamap.geo.climatology import SeasonalClimatology
from metamap.geo.io import GeoField
from metamap.geo.transforms import ValueTransform
from metamap.preprocessing import Standardizer

Window = tuple[slice, slice]
FULL: Window = (slice(None), slice(None))


def field_fraction(field: GeoField) -> np.ndarray:
    """Year fraction ``[T]`` of every time step of ``field``; zeros when its times are not dates."""
    try:
        return field.year_fraction()
    except DataError:
        return np.zeros(field.shape[0])


def anomaly_standardizer(var: str) -> Standardizer:
    """The (unfitted) standardization of ``[time, lat, lon]`` anomalies of ``var``: a mean per pixel and one
    standard deviation, zero spread refused."""
    return Standardizer(axis=0, scale_axis=None, name=f"{var} training anomalies")


@dataclass
class FieldScaler:
    """File unit <-> model space for one grid: ``transform``, ``climatology`` (coefficients ``[P, H, W]`` in
    the transformed unit) and ``standardizer`` (of the anomalies, mean ``[H, W]``)."""

    transform: ValueTransform
    climatology: SeasonalClimatology
    standardizer: Standardizer

    @classmethod
    def fit(cls, values: np.ndarray, fraction: np.ndarray, transform: ValueTransform, var: str) -> FieldScaler:
        """Fit on training fields ``values [T, H, W]`` (file unit, NaN = missing) at year fractions
        ``fraction [T]``."""
        transformed = transform.forward(np.asarray(values, np.float64))
        climatology = SeasonalClimatology.fit(transformed, fraction)
        anomalies = transformed - climatology.predict(fraction)
        standardizer = anomaly_standardizer(var).fit(anomalies, np.isfinite(anomalies))
        return cls(transform, climatology, standardizer)

    def background(self, fraction: np.ndarray, window: Window = FULL) -> np.ndarray:
        """``c(f) + m`` ``[T, h, w]`` in the transformed unit: what a zero model output means."""
        coefficients = self.climatology.coefficients[:, window[0], window[1]]
        seasonal = SeasonalClimatology(coefficients, self.climatology.harmonics).predict(fraction)
        return seasonal + self.standardizer.mean_[window[0], window[1]]

    @property
    def std(self) -> float:
        """``s``: one standard deviation of the training anomalies, in the transformed unit."""
        return float(self.standardizer.scale_)

    def to_model(self, values: np.ndarray, fraction: np.ndarray, window: Window = FULL) -> np.ndarray:
        """``values [T, h, w]`` (file unit, the ``window`` of the grid) at ``fraction [T]`` -> ``z`` float32."""
        transformed = self.transform.forward(np.asarray(values, np.float64))
        return ((transformed - self.background(fraction, window)) / self.std).astype(np.float32)

    def from_model(self, z: np.ndarray, fraction: np.ndarray, window: Window = FULL) -> np.ndarray:
        """``z [..., T, h, w]`` -> file unit float32 (non-negative and dry where the transform says)."""
        transformed = np.asarray(z, np.float64) * self.std + self.background(fraction, window)
        return self.transform.inverse(transformed).astype(np.float32)

    def climatology_field(self, fraction: np.ndarray) -> np.ndarray:
        """The climatology ``[T, H, W]`` in the file unit (a baseline: the fill of a model that knows nothing)."""
        return self.from_model(np.zeros((len(np.atleast_1d(fraction)), *self.standardizer.mean_.shape)), fraction)
