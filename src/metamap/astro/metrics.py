"""Photometric-redshift metrics on dz = (z_phot - z_spec) / (1 + z_spec).

- ``sigma_nmad`` = 1.4826 * median(|dz - median(dz)|), the normalized median
  absolute deviation;
- ``outlier_fraction`` = share of objects with |dz| > 0.15;
- ``bias`` = mean(dz).

For a redshift PDF given as M samples (or M quantiles at levels
``(j - 0.5) / M``) per object:

- ``pit``: the PDF's cumulative probability at the true redshift (uniform on
  [0, 1] for a calibrated PDF); ``pit_ks``: the Kolmogorov-Smirnov distance
  of the PIT values from uniform; ``pit_histogram``: counts in equal bins;
- ``crps``: the continuous ranked probability score, E|X - z| - E|X - X'| / 2
  (in redshift units; lower is better; equals |z_phot - z| for a point).
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


def pit(samples: np.ndarray, z_spec: np.ndarray) -> np.ndarray:
    """PIT ``[N]`` of ``samples [N, M]`` (M draws or quantiles at levels (j - 0.5) / M) at ``z_spec [N]``:
    the empirical CDF interpolated between the sorted samples, within [0.5 / M, 1 - 0.5 / M]."""
    samples, z_spec = _pdf_inputs(samples, z_spec)
    m = samples.shape[1]
    levels = (np.arange(m) + 0.5) / m
    ordered = np.sort(samples, axis=1)
    return np.array([np.interp(z, row, levels) for row, z in zip(ordered, z_spec, strict=True)])


def pit_ks(pit_values: np.ndarray) -> float:
    """Largest distance between the empirical CDF of ``pit_values [N]`` and the uniform CDF on [0, 1]."""
    u = np.sort(np.asarray(pit_values, dtype=np.float64))
    n = u.size
    if n == 0:
        raise ShapeError("pit_ks: no PIT values")
    steps = np.arange(1, n + 1) / n
    return float(max(np.max(steps - u), np.max(u - (steps - 1.0 / n))))


def pit_histogram(pit_values: np.ndarray, bins: int = 10) -> list[int]:
    """Counts of ``pit_values`` in ``bins`` equal bins of [0, 1] (flat for a calibrated PDF)."""
    return np.histogram(np.asarray(pit_values), bins=bins, range=(0.0, 1.0))[0].tolist()


def crps(samples: np.ndarray, z_spec: np.ndarray) -> np.ndarray:
    """CRPS ``[N]`` of the empirical distribution of ``samples [N, M]`` at ``z_spec [N]``:
    mean |x_j - z| - (1 / M^2) sum_j (2j - M - 1) x_(j), the second term E|X - X'| / 2 over sorted x_(j)."""
    samples, z_spec = _pdf_inputs(samples, z_spec)
    m = samples.shape[1]
    ordered = np.sort(samples, axis=1)
    weights = (2.0 * np.arange(1, m + 1) - m - 1) / m**2
    return np.abs(ordered - z_spec[:, None]).mean(1) - ordered @ weights


def _pdf_inputs(samples: np.ndarray, z_spec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    samples, z_spec = np.asarray(samples, dtype=np.float64), np.asarray(z_spec, dtype=np.float64)
    if samples.ndim != 2 or z_spec.shape != samples.shape[:1] or samples.size == 0:
        raise ShapeError(f"expected samples [N, M] and z_spec [N], got {describe(samples)} and {describe(z_spec)}")
    return samples, z_spec
