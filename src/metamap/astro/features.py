"""Photometric features with missing-band masks, standardized from training objects only.

Features per object (14): the five ugriz magnitudes, the four colours
u-g, g-r, r-i, i-z, and five missing-band flags (1.0 = band missing). A
colour is missing when either of its bands is. After standardization a
missing magnitude or colour is 0 whatever its raw value, so the value
written in a masked band never reaches a model, its loss or its prediction;
the flags tell the model which bands it lacks.
"""

from __future__ import annotations

import numpy as np

from metamap.astro.catalogue import BANDS
from metamap.errors import DataError, ShapeError, describe
from metamap.preprocessing import Standardizer

N_BANDS = len(BANDS)
N_SCALED = 2 * N_BANDS - 1  # magnitudes and colours; the flags after them stay 0/1
FEATURE_NAMES = (*BANDS, "u-g", "g-r", "r-i", "i-z", *(f"{b}_missing" for b in BANDS))


def raw_features(mags: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``mags [N, 5]`` (any value where ``valid`` is False) -> ``(features [N, 14], feature_valid [N, 14])``."""
    if mags.ndim != 2 or mags.shape[1] != N_BANDS or valid.shape != mags.shape:
        raise ShapeError(f"expected mags and valid [N, {N_BANDS}], got {describe(mags)} and {describe(valid)}")
    clean = np.where(valid, mags, 0.0)
    colours = clean[:, :-1] - clean[:, 1:]
    colour_valid = valid[:, :-1] & valid[:, 1:]
    flags = (~valid).astype(np.float64)
    features = np.concatenate([clean, colours, flags], axis=1)
    feature_valid = np.concatenate([valid, colour_valid, np.ones_like(valid)], axis=1)
    return np.where(feature_valid, features, 0.0), feature_valid


def fit_scaler(mags: np.ndarray, valid: np.ndarray) -> Standardizer:
    """Per-feature mean and standard deviation (ddof 1, floored at 1e-8) of the valid magnitudes and colours
    of the training objects ``mags [N, 5]`` (``valid`` True = measured); the flags are not standardized."""
    features, ok = raw_features(mags, valid)
    scaler = Standardizer(axis=0, ddof=1, floor=1e-8, name="training magnitudes and colours")
    return scaler.fit(features[:, :N_SCALED], ok[:, :N_SCALED])


def standardized_features(scaler: Standardizer, mags: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Features ``float32 [N, 14]`` of ``mags [N, 5]``: magnitudes and colours standardized with ``scaler``
    (:func:`fit_scaler`; 0 where missing), then the 0/1 missing-band flags."""
    features, ok = raw_features(mags, valid)
    scaled = np.where(ok[:, :N_SCALED], scaler.transform(features[:, :N_SCALED]), 0.0)
    return np.concatenate([scaled, features[:, N_SCALED:]], axis=1).astype(np.float32)


def drop_bands(valid: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``valid [N, 5]`` with each band dropped with probability ``fraction`` (>= 1 band kept per row)."""
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"drop_bands: fraction must be in [0, 1), got {fraction}")
    dropped = valid & (rng.random(valid.shape) >= fraction)
    empty = ~dropped.any(1)
    if empty.any():  # give back one originally valid band, at random, to rows left empty
        keep = np.argmax(valid[empty] * rng.random((int(empty.sum()), valid.shape[1])), axis=1)
        dropped[np.flatnonzero(empty), keep] = True
    return dropped


def add_noise(mags: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``mags`` plus Gaussian photometric noise of ``sigma`` magnitudes (NaN stays NaN)."""
    return mags + sigma * rng.standard_normal(mags.shape)
