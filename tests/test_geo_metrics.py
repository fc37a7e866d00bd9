"""WeatherBench 2 metrics against hand computations and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metamap.errors import ShapeError
from metamap.geo import metrics


def test_fair_crps_matches_a_hand_computation():
    ensemble = np.array([1.0, 2.0, 4.0]).reshape(3, 1, 1)
    truth = np.array([[3.0]])
    # skill: (2 + 1 + 1) / 3; pairs: |1-2| + |1-4| + |2-4| = 6, counted twice over M (M - 1) = 6 ordered pairs
    expected = 4 / 3 - 0.5 * (2 * 6) / 6
    assert metrics.fair_crps(ensemble, truth) == pytest.approx(expected)


def test_fair_crps_of_a_large_gaussian_ensemble_approaches_the_closed_form():
    rng = np.random.default_rng(0)
    mu, sigma, y = 0.3, 1.7, np.array([[-0.5, 0.3, 2.9]])
    ensemble = mu + sigma * rng.standard_normal((20000, 1, 3))
    closed = metrics.gaussian_crps_map(np.full(y.shape, mu), np.full(y.shape, sigma), y)
    assert metrics.fair_crps_map(ensemble, y) == pytest.approx(closed, rel=0.02)


def test_gaussian_crps_at_the_mean_is_the_known_constant():
    value = metrics.gaussian_crps(np.zeros((1, 1)), np.full((1, 1), 2.0), np.zeros((1, 1)))
    assert value == pytest.approx(2.0 * (2 / math.sqrt(2 * math.pi) - 1 / math.sqrt(math.pi)))


def test_cos_latitude_weighted_rmse_by_hand():
    lat = np.array([0.0, 60.0])
    truth = np.zeros((2, 2))
    prediction = np.array([[1.0, 1.0], [3.0, 3.0]])
    # weights cos(0) = 1, cos(60) = 0.5: (1 * 1 + 0.5 * 9) / 1.5 averaged over both columns
    assert metrics.rmse(prediction, truth, lat) == pytest.approx(math.sqrt((1 + 0.5 * 9) / 1.5))
    mask = np.array([[True, False], [False, True]])
    assert metrics.rmse(prediction, truth, lat, mask) == pytest.approx(math.sqrt((1 + 0.5 * 9) / 1.5))


def test_nan_truth_is_not_scored_and_an_empty_selection_is_an_error():
    truth = np.array([[np.nan, 1.0]])
    assert metrics.rmse(np.array([[5.0, 2.0]]), truth) == pytest.approx(1.0)
    with pytest.raises(ShapeError, match="no pixel"):
        metrics.rmse(np.zeros((1, 2)), truth, mask=np.array([[True, False]]))


def test_spread_skill_is_near_one_for_a_calibrated_ensemble():
    rng = np.random.default_rng(1)
    centre = rng.standard_normal((40, 40))
    truth = centre + rng.standard_normal((40, 40))
    ensemble = centre + rng.standard_normal((8, 40, 40))
    assert metrics.spread_skill(ensemble, truth) == pytest.approx(1.0, abs=0.05)
    counts = metrics.rank_histogram(ensemble, truth, rng)
    assert counts.sum() == 1600 and counts.shape == (9,)
    assert counts.min() > 0.6 * 1600 / 9


def test_ensemble_shapes_are_checked():
    with pytest.raises(ShapeError, match="ensemble"):
        metrics.fair_crps(np.zeros((1, 2, 2)), np.zeros((2, 2)))
