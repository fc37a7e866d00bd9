"""Photometric-redshift metrics on dz = (z_phot - z_spec) / (1 + z_spec).

- ``sigma_nmad`` = 1.4826 * median(|dz - median(dz)|), the normalized median
  absolute deviation;
- ``outlier_fraction`` = share of objects with |dz| > 0.15;
- ``bias`` = mean(dz).
"""

from __future__ import annotations

import numpy as np

from metamap.errors import ShapeError, describe

OUTLIER_LIMIT = 0.15
NMAD_SCALE = 1.4826


def delta_z(z_phot: np.ndarray, z_spec: np.ndarray) -> np.ndarray:
    """``(z_phot - z_spec) / (1 + z_spec)`` for arrays of the same shape."""
    z_phot, z_spec = np.asarray(z_phot, dtype=np.float64), np.asarray(z_spec, dtype=np.float64)
    if z_phot.shape != z_spec.shape or z_phot.size == 0:
        raise ShapeError(
            f"z_phot and z_spec must be non-empty and alike, got {describe(z_phot)} and {describe(z_spec)}"
        )
    return (z_phot - z_spec) / (1.0 + z_spec)


def sigma_nmad(z_phot: np.ndarray, z_spec: np.ndarray) -> float:
    dz = delta_z(z_phot, z_spec)
    return float(NMAD_SCALE * np.median(np.abs(dz - np.median(dz))))


def outlier_fraction(z_phot: np.ndarray, z_spec: np.ndarray, limit: float = OUTLIER_LIMIT) -> float:
    return float(np.mean(np.abs(delta_z(z_phot, z_spec)) > limit))


def bias(z_phot: np.ndarray, z_spec: np.ndarray) -> float:
    return float(np.mean(delta_z(z_phot, z_spec)))


def photoz_metrics(z_phot: np.ndarray, z_spec: np.ndarray) -> dict[str, float]:
    """``{"sigma_nmad", "outlier_frac", "bias", "n"}``."""
    return {
        "sigma_nmad": sigma_nmad(z_phot, z_spec),
        "outlier_frac": outlier_fraction(z_phot, z_spec),
        "bias": bias(z_phot, z_spec),
        "n": int(np.size(z_phot)),
    }
