"""Unconditional generation and how to judge it against held-out fields.

The generative model is conditioned on latitude and longitude only (static
fields), not on any observation. Samples are judged by the Wasserstein-1
distance of the marginal distribution, the radially averaged power spectrum
and the spatial autocorrelation, each against held-out test fields.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from metamap.errors import ShapeError, describe
from metamap.geo.data import PatchSource
from metamap.geo.models import GeoModel, sample_ensemble

GENERATE_COND_CHANNELS = 2  # latitude, longitude


def generation_batches(source: PatchSource, batch: int) -> Callable[[], dict[str, torch.Tensor]]:
    """Batches ``{"x0", "cond", "valid"}`` for the unconditional (static-conditioned) model."""

    def make() -> dict[str, torch.Tensor]:
        patches = source.sample(batch)
        values = patches.values[:, :1]
        return {"x0": torch.nan_to_num(values), "valid": torch.isfinite(values), "cond": patches.static}

    return make


def generate(
    model: GeoModel,
    static: np.ndarray,
    n: int,
    steps: int = 20,
    sampler: str = "dpmpp",
    seed: int = 0,
    never_valid: np.ndarray | None = None,
    progress: bool = False,
) -> np.ndarray:
    """``n`` new fields ``[N, H, W]`` (standardized) on the grid of ``static [2, H, W]`` (``progress``: a bar
    over the sampler's steps)."""
    cond = torch.from_numpy(np.asarray(static, np.float32))[None].expand(n, -1, -1, -1)
    out = sample_ensemble(model, cond, n, steps=steps, sampler=sampler, seed=seed, progress=progress)[:, 0].numpy()
    if never_valid is not None:
        out[:, np.asarray(never_valid, bool)] = np.nan
    return out


def _fields(fields: np.ndarray) -> np.ndarray:
    fields = np.asarray(fields, np.float64)
    if fields.ndim != 3:
        raise ShapeError(f"expected fields [N, H, W], got {describe(fields)}")
    return fields


def wasserstein1(samples: np.ndarray, reference: np.ndarray) -> float:
    """Wasserstein-1 distance between the marginal distributions of all finite values (the values' unit)."""
    from scipy.stats import wasserstein_distance

    a, b = np.asarray(samples, np.float64).ravel(), np.asarray(reference, np.float64).ravel()
    return float(wasserstein_distance(a[np.isfinite(a)], b[np.isfinite(b)]))


def power_spectrum(fields: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of ``fields [N, H, W]``, averaged over fields.

    Each field's mean is removed (NaN set to it). Returns ``(wavenumber [K]``
    in cycles per grid step, ``power [K])``, bins of width ``1 / max(H, W)``
    up to 0.5 (the Nyquist frequency).
    """
    fields = _fields(fields)
    _, height, width = fields.shape
    means = np.nanmean(fields, axis=(1, 2), keepdims=True)
    anomalies = np.where(np.isfinite(fields), fields - means, 0.0)
    power = np.abs(np.fft.fft2(anomalies)) ** 2 / (height * width)
    ky, kx = np.meshgrid(np.fft.fftfreq(height), np.fft.fftfreq(width), indexing="ij")
    radius = np.sqrt(ky**2 + kx**2)
    width_bin = 1.0 / max(height, width)
    bins = np.rint(radius / width_bin).astype(np.int64)
    n_bins = int(round(0.5 / width_bin))
    keep = (bins >= 1) & (bins <= n_bins)
    mean_power = power.mean(axis=0)
    totals = np.bincount(bins[keep], weights=mean_power[keep], minlength=n_bins + 1)[1:]
    counts = np.bincount(bins[keep], minlength=n_bins + 1)[1:]
    used = counts > 0
    return (np.arange(1, n_bins + 1) * width_bin)[used], totals[used] / counts[used]


def autocorrelation(fields: np.ndarray, max_lag: int) -> np.ndarray:
    """Spatial autocorrelation ``[max_lag + 1]`` at lags 0..max_lag grid steps, averaged over the two axes.

    For each lag, the correlation between all pixel pairs that far apart
    along latitude or along longitude (pooled over fields, each field's mean
    removed; pairs with a NaN skipped).
    """
    fields = _fields(fields)
    if not 0 <= max_lag < min(fields.shape[1:]):
        raise ShapeError(f"max_lag must be in [0, {min(fields.shape[1:]) - 1}], got {max_lag}")
    anomalies = fields - np.nanmean(fields, axis=(1, 2), keepdims=True)
    out = []
    for lag in range(max_lag + 1):
        pairs = [
            (anomalies[:, lag:, :], anomalies[:, : anomalies.shape[1] - lag, :]),
            (anomalies[:, :, lag:], anomalies[:, :, : anomalies.shape[2] - lag]),
        ]
        a = np.concatenate([p[0].ravel() for p in pairs])
        b = np.concatenate([p[1].ravel() for p in pairs])
        ok = np.isfinite(a) & np.isfinite(b)
        out.append(np.corrcoef(a[ok], b[ok])[0, 1])
    return np.asarray(out)


def log_spectrum_error(samples: np.ndarray, reference: np.ndarray) -> float:
    """Mean absolute log10 ratio of the two radially averaged power spectra (0 = identical)."""
    k1, p1 = power_spectrum(samples)
    k2, p2 = power_spectrum(reference)
    if not np.array_equal(k1, k2):
        raise ShapeError("samples and reference must lie on grids of the same size")
    return float(np.mean(np.abs(np.log10(p1 / p2))))
