"""Ensemble calibration by variance scaling: members moved toward (or away from) their mean by one factor.

``scaled = mean + s (members - mean)``, with ``s`` fitted on validation
fields so that the ensemble's spread matches the ensemble-mean error there
(:func:`fit_spread_scale`: ``s = RMSE / spread``, pooled over the fields).
It leaves the ensemble mean unchanged, so RMSE is unchanged; it acts in
model space, so a non-negative variable stays non-negative on the way back.
"""

from __future__ import annotations

import numpy as np

from metamap.errors import DataError, ShapeError, describe


def apply_spread_scale(members: np.ndarray, scale: float) -> np.ndarray:
    """``members [M, ...]`` with their deviations from the member mean multiplied by ``scale``."""
    members = np.asarray(members)
    mean = members.mean(axis=0, keepdims=True)
    return (mean + scale * (members - mean)).astype(members.dtype)


def fit_spread_scale(ensembles: list[np.ndarray], truths: list[np.ndarray], masks: list[np.ndarray]) -> float:
    """The factor ``s`` making spread equal skill over validation fields: ``ensembles`` of ``[M, H, W]``,
    ``truths`` ``[H, W]`` and ``masks`` ``[H, W]`` (True = scored), all in model space.

    Spread as in :func:`metamap.geo.metrics.ensemble_spread` (unbiased variance, times (M+1)/M);
    ``s = sqrt(mean squared error of the mean / mean spread^2)`` over the scored pixels of all fields.
    """
    if not ensembles or len(ensembles) != len(truths) or len(truths) != len(masks):
        raise ShapeError(
            f"expected as many ensembles, truths and masks (>= 1), got {len(ensembles)}, {len(truths)}, {len(masks)}"
        )
    errors, variances = [], []
    for members, truth, mask in zip(ensembles, truths, masks, strict=True):
        members, truth = np.asarray(members, np.float64), np.asarray(truth, np.float64)
        if members.ndim != 3 or members.shape[1:] != truth.shape or members.shape[0] < 2:
            raise ShapeError(f"expected an ensemble [M>=2, H, W] of the truth's grid, got {describe(members)}")
        scored = np.asarray(mask, bool) & np.isfinite(truth)
        m = members.shape[0]
        errors.append((members.mean(axis=0) - truth)[scored] ** 2)
        variances.append(members.var(axis=0, ddof=1)[scored] * (m + 1) / m)
    spread2 = float(np.concatenate(variances).mean())
    if not spread2 > 0:
        raise DataError("the validation ensembles have no spread; cannot fit a spread scale")
    return float(np.sqrt(np.concatenate(errors).mean() / spread2))
