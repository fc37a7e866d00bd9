"""Calibration on validation fields: a known under-dispersed ensemble is brought to spread/skill 1, and a
correction that only adds error is left out (the estimate is the floor)."""

from __future__ import annotations

import numpy as np
import pytest

from metamap.errors import DataError, ShapeError
from metamap.geo.calibration import Calibration, fit_calibration
from metamap.geo.metrics import ensemble_mean_rmse, spread_skill


def _fields(rng, n, spread, bias=0.0):
    """``n`` fields: truth = centre + N(0, 1), members = centre + bias + N(0, spread^2), estimate = centre,
    70 % of pixels scored."""
    out = []
    for _ in range(n):
        centre = rng.normal(size=(12, 14))
        truth = centre + rng.normal(size=centre.shape)
        members = centre + bias + spread * rng.normal(size=(16, *centre.shape))
        out.append((members, centre, truth, rng.random(centre.shape) < 0.7))
    return out


def _fit(fields):
    return fit_calibration(*map(list, zip(*fields, strict=True)))


def test_the_fitted_spread_makes_an_under_dispersed_ensemble_calibrated():
    rng = np.random.default_rng(0)
    validation, test = _fields(rng, 6, 0.4), _fields(rng, 6, 0.4)
    calibration = _fit(validation)
    assert calibration.spread == pytest.approx(1 / 0.4, rel=0.1)
    before = np.mean([spread_skill(m, t, mask=k) for m, _, t, k in test])
    after = np.mean([spread_skill(calibration.apply(m, e), t, mask=k) for m, e, t, k in test])
    assert before < 0.5 and 0.9 < after < 1.1


def test_a_correction_that_only_adds_error_is_left_out():
    rng = np.random.default_rng(1)
    calibration = _fit(_fields(rng, 6, 1.0, bias=2.0))  # the members' mean is off by 2 where the estimate is not
    assert calibration.mean_weight == 0.0
    members, estimate, truth, mask = _fields(rng, 1, 1.0, bias=2.0)[0]
    calibrated = calibration.apply(members, estimate)
    np.testing.assert_allclose(calibrated.mean(axis=0), estimate, atol=1e-9)
    assert ensemble_mean_rmse(calibrated, truth, mask=mask) < 0.5 * ensemble_mean_rmse(members, truth, mask=mask)


def test_an_unbiased_correction_is_kept_whole():
    rng = np.random.default_rng(2)
    fields = []
    for members, estimate, truth, mask in _fields(rng, 6, 0.3):
        fields.append((members, estimate + 1.5, truth, mask))  # the estimate is off by 1.5, the members are not
    calibration = _fit(fields)
    assert calibration.mean_weight == 1.0
    members, estimate = fields[0][0], fields[0][1]
    np.testing.assert_allclose(
        Calibration(1.0, 1.0).apply(members, estimate), members, atol=1e-12
    )  # weight 1, factor 1: unchanged


def test_bad_calibration_inputs_are_refused():
    with pytest.raises(ShapeError):
        fit_calibration([], [], [], [])
    with pytest.raises(DataError, match="no spread"):
        fit_calibration([np.zeros((4, 3, 3))], [np.zeros((3, 3))], [np.ones((3, 3))], [np.ones((3, 3), bool)])
