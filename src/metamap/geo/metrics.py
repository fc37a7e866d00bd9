"""Scores of deterministic and ensemble fields in WeatherBench 2 conventions (numpy, float64).

Shapes: ``truth [..., H, W]``; an ensemble has one leading member axis
``[M, ..., H, W]``. ``mask`` (bool, broadcastable to ``truth``) selects the
scored pixels (e.g. the missing ones in gap-filling); ``lat`` (degrees,
``[H]``) gives cos-latitude area weights normalised to mean 1 over the scored
pixels. Pixels whose truth is NaN are never scored.
"""

from __future__ import annotations

import math

import numpy as np

from metamap.errors import ShapeError


def latitude_weights(lat: np.ndarray) -> np.ndarray:
    """cos(latitude) ``[H]``, normalised to mean 1."""
    weights = np.cos(np.deg2rad(np.asarray(lat, dtype=np.float64)))
    return weights / weights.mean()


def _weights(truth: np.ndarray, lat: np.ndarray | None, mask: np.ndarray | None) -> np.ndarray:
    """Per-pixel weights, zero where not scored, broadcast to ``truth``; they sum to the number of scored pixels."""
    truth = np.asarray(truth, dtype=np.float64)
    scored = np.isfinite(truth)
    if mask is not None:
        scored &= np.broadcast_to(np.asarray(mask, dtype=bool), truth.shape)
    weights = np.ones(truth.shape)
    if lat is not None:
        lat = np.asarray(lat)
        if lat.shape != (truth.shape[-2],):
            raise ShapeError(f"lat must be [H={truth.shape[-2]}], got {list(lat.shape)}")
        weights = weights * latitude_weights(lat)[:, None]
    weights = np.where(scored, weights, 0.0)
    total = weights.sum()
    if total == 0:
        raise ShapeError("no pixel to score: the mask selects nothing finite")
    return weights * scored.sum() / total


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    return float(np.sum(np.where(weights > 0, values, 0.0) * weights) / np.sum(weights))


def rmse(
    prediction: np.ndarray, truth: np.ndarray, lat: np.ndarray | None = None, mask: np.ndarray | None = None
) -> float:
    """Root of the (cos-latitude weighted) mean squared error over the scored pixels."""
    prediction, truth = np.asarray(prediction, np.float64), np.asarray(truth, np.float64)
    if prediction.shape != truth.shape:
        raise ShapeError(f"prediction {list(prediction.shape)} and truth {list(truth.shape)} differ in shape")
    weights = _weights(truth, lat, mask)
    return math.sqrt(_weighted_mean((prediction - truth) ** 2, weights))


def mae(
    prediction: np.ndarray, truth: np.ndarray, lat: np.ndarray | None = None, mask: np.ndarray | None = None
) -> float:
    """(Weighted) mean absolute error; it is the CRPS of a one-member (deterministic) forecast."""
    prediction, truth = np.asarray(prediction, np.float64), np.asarray(truth, np.float64)
    weights = _weights(truth, lat, mask)
    return _weighted_mean(np.abs(prediction - truth), weights)


def _check_ensemble(ensemble: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ensemble, truth = np.asarray(ensemble, np.float64), np.asarray(truth, np.float64)
    if ensemble.shape[1:] != truth.shape or ensemble.shape[0] < 2:
        raise ShapeError(f"expected ensemble [M>=2, {', '.join(map(str, truth.shape))}], got {list(ensemble.shape)}")
    return ensemble, truth


def fair_crps_map(ensemble: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Pointwise fair CRPS ``mean_i |X_i - y| - 1/(2 M (M-1)) sum_{i,j} |X_i - X_j|``, shape of ``truth``.

    Computed in O(M log M) per pixel from the sorted members:
    ``sum_{i,j} |X_i - X_j| = 2 sum_k (2k - M - 1) X_(k)`` (k = 1..M).
    """
    ensemble, truth = _check_ensemble(ensemble, truth)
    m = ensemble.shape[0]
    skill = np.abs(ensemble - truth).mean(axis=0)
    ranks = (2 * np.arange(1, m + 1) - m - 1).reshape((m,) + (1,) * truth.ndim)
    pair_sum = 2 * np.sum(ranks * np.sort(ensemble, axis=0), axis=0)
    return skill - pair_sum / (2 * m * (m - 1))


def fair_crps(
    ensemble: np.ndarray, truth: np.ndarray, lat: np.ndarray | None = None, mask: np.ndarray | None = None
) -> float:
    """Fair CRPS (WeatherBench 2: skill - 0.5 spread with the unbiased M(M-1) pair count), weighted mean."""
    values = fair_crps_map(ensemble, truth)
    return _weighted_mean(values, _weights(truth, lat, mask))


def gaussian_crps_map(mean: np.ndarray, std: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Closed-form CRPS of N(mean, std^2) at ``truth``: ``s [z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)]``."""
    from scipy.stats import norm

    mean, std, truth = (np.asarray(a, np.float64) for a in (mean, std, truth))
    std = np.maximum(std, 1e-12)
    z = (truth - mean) / std
    return std * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi))


def gaussian_crps(
    mean: np.ndarray, std: np.ndarray, truth: np.ndarray, lat: np.ndarray | None = None, mask: np.ndarray | None = None
) -> float:
    """Weighted mean of :func:`gaussian_crps_map` (kriging's CRPS from its predictive variance)."""
    return _weighted_mean(gaussian_crps_map(mean, std, truth), _weights(np.asarray(truth, np.float64), lat, mask))


def ensemble_mean_rmse(
    ensemble: np.ndarray, truth: np.ndarray, lat: np.ndarray | None = None, mask: np.ndarray | None = None
) -> float:
    """RMSE of the ensemble mean."""
    ensemble, truth = _check_ensemble(ensemble, truth)
    return rmse(ensemble.mean(axis=0), truth, lat, mask)


def ensemble_spread(
    ensemble: np.ndarray, truth: np.ndarray, lat: np.ndarray | None = None, mask: np.ndarray | None = None
) -> float:
    """sqrt of the weighted mean unbiased ensemble variance, times sqrt((M+1)/M) (WeatherBench 2)."""
    ensemble, truth = _check_ensemble(ensemble, truth)
    m = ensemble.shape[0]
    variance = ensemble.var(axis=0, ddof=1)
    return math.sqrt(_weighted_mean(variance, _weights(truth, lat, mask)) * (m + 1) / m)


def spread_skill(
    ensemble: np.ndarray, truth: np.ndarray, lat: np.ndarray | None = None, mask: np.ndarray | None = None
) -> float:
    """Spread/skill ratio: :func:`ensemble_spread` / :func:`ensemble_mean_rmse`; 1 for a calibrated ensemble."""
    return ensemble_spread(ensemble, truth, lat, mask) / ensemble_mean_rmse(ensemble, truth, lat, mask)


def rank_histogram(
    ensemble: np.ndarray, truth: np.ndarray, rng: np.random.Generator, mask: np.ndarray | None = None
) -> np.ndarray:
    """Counts ``[M + 1]`` of the truth's rank among the members over the scored pixels (ties broken at random)."""
    ensemble, truth = _check_ensemble(ensemble, truth)
    scored = np.isfinite(truth)
    if mask is not None:
        scored &= np.broadcast_to(np.asarray(mask, bool), truth.shape)
    members = ensemble[:, scored]
    observed = truth[scored]
    below = (members < observed).sum(axis=0)
    ties = (members == observed).sum(axis=0)
    ranks = below + np.floor(rng.random(observed.shape) * (ties + 1)).astype(np.int64)
    return np.bincount(ranks, minlength=ensemble.shape[0] + 1)
