"""Variance-scaling calibration: a known under-dispersed ensemble is brought to spread/skill 1."""

from __future__ import annotations

import numpy as np
import pytest

from metamap.errors import DataError, ShapeError
from metamap.geo.calibration import apply_spread_scale, fit_spread_scale
from metamap.geo.metrics import ensemble_mean_rmse, spread_skill


def _fields(rng, n, spread):
    """``n`` fields: truth = centre + N(0, 1), members = centre + N(0, spread^2), 70 % of pixels scored."""
    out = []
    for _ in range(n):
        centre = rng.normal(size=(12, 14))
        truth = centre + rng.normal(size=centre.shape)
        members = centre + spread * rng.normal(size=(16, *centre.shape))
        out.append((members, truth, rng.random(centre.shape) < 0.7))
    return out


def test_the_fitted_scale_makes_an_under_dispersed_ensemble_calibrated():
    rng = np.random.default_rng(0)
    validation, test = _fields(rng, 6, 0.4), _fields(rng, 6, 0.4)
    scale = fit_spread_scale(*map(list, zip(*validation, strict=True)))
    assert scale == pytest.approx(1 / 0.4, rel=0.1)
    before = np.mean([spread_skill(m, t, mask=k) for m, t, k in test])
    after = np.mean([spread_skill(apply_spread_scale(m, scale), t, mask=k) for m, t, k in test])
    assert before < 0.5 and 0.9 < after < 1.1
    m, t, k = test[0]
    assert ensemble_mean_rmse(apply_spread_scale(m, scale), t, mask=k) == pytest.approx(
        ensemble_mean_rmse(m, t, mask=k)
    )


def test_bad_calibration_inputs_are_refused():
    with pytest.raises(ShapeError):
        fit_spread_scale([], [], [])
    with pytest.raises(DataError, match="no spread"):
        fit_spread_scale([np.zeros((4, 3, 3))], [np.ones((3, 3))], [np.ones((3, 3), bool)])
