"""Photo-z metrics against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from metamap.astro.metrics import bias, delta_z, outlier_fraction, photoz_metrics, sigma_nmad
from metamap.errors import ShapeError


def test_sigma_nmad_outliers_and_bias_by_hand():
    z_spec = np.zeros(5)
    z_phot = np.array([0.0, 0.01, -0.01, 0.02, 0.2])
    # dz = z_phot; median 0.01; |dz - 0.01| = [0.01, 0, 0.02, 0.01, 0.19]; median 0.01
    assert sigma_nmad(z_phot, z_spec) == pytest.approx(1.4826 * 0.01)
    assert outlier_fraction(z_phot, z_spec) == pytest.approx(0.2)
    assert bias(z_phot, z_spec) == pytest.approx(0.22 / 5)


def test_delta_z_is_normalised_by_one_plus_z():
    z_spec = np.array([1.0, 1.0, 3.0])
    z_phot = np.array([1.2, 0.4, 3.0])
    assert delta_z(z_phot, z_spec) == pytest.approx([0.1, -0.3, 0.0])
    # |dz| > 0.15 only for the second object
    assert outlier_fraction(z_phot, z_spec) == pytest.approx(1 / 3)
    metrics = photoz_metrics(z_phot, z_spec)
    assert metrics["n"] == 3 and metrics["sigma_nmad"] == pytest.approx(1.4826 * 0.1)


def test_perfect_predictions_score_zero_and_bad_shapes_raise():
    z = np.array([0.1, 0.2, 0.3])
    assert sigma_nmad(z, z) == 0.0 and outlier_fraction(z, z) == 0.0 and bias(z, z) == 0.0
    with pytest.raises(ShapeError, match="z_phot and z_spec"):
        sigma_nmad(z, z[:2])


def test_crps_matches_the_pairwise_definition_and_a_point():
    from metamap.astro.metrics import crps

    rng = np.random.default_rng(0)
    samples, z = rng.normal(size=(4, 7)), rng.normal(size=4)
    pairwise = np.abs(samples - z[:, None]).mean(1) - 0.5 * np.abs(samples[:, :, None] - samples[:, None]).mean((1, 2))
    assert crps(samples, z) == pytest.approx(pairwise)
    assert crps(np.full((1, 5), 0.3), np.array([0.1])) == pytest.approx([0.2])


def test_pit_is_uniform_for_a_calibrated_pdf_and_not_for_a_narrow_one():
    from metamap.astro.metrics import pit, pit_histogram, pit_ks

    rng = np.random.default_rng(1)
    z = rng.normal(size=2000)
    levels = (np.arange(50) + 0.5) / 50
    from scipy.stats import norm

    calibrated = np.broadcast_to(norm.ppf(levels), (2000, 50))  # the true N(0, 1) as quantiles
    values = pit(calibrated, z)
    assert pit_ks(values) < 0.05
    assert sum(pit_histogram(values)) == 2000
    assert pit_ks(pit(0.3 * calibrated, z)) > 0.2  # too narrow: PIT piles up at 0 and 1
    assert pit_ks(np.linspace(0, 1, 101)) == pytest.approx(1 / 101, abs=1e-9)
