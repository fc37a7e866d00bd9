"""Generation: statistics of the diffusion samples against held-out test fields, training fields as reference."""

from __future__ import annotations

from typing import Any

import numpy as np

from metamap.bench.geo.settings import Settings
from metamap.bench.geo.training import Setup
from metamap.geo.evaluation import timed
from metamap.geo.generate import autocorrelation, generate, log_spectrum_error, power_spectrum, wasserstein1
from metamap.geo.models import GeoModel


def generation_benchmark(settings: Settings, setup: Setup, model: GeoModel) -> tuple[dict[str, Any], dict, dict]:
    """Samples vs held-out test fields; the training fields give the reference values."""
    (samples, seconds) = timed(
        lambda: np.concatenate(
            [
                setup.from_model(
                    generate(model, setup.static, 16, steps=settings.fill_steps, seed=s), int(setup.test_times[0])
                )
                for s in range(max(settings.generated // 16, 1))
            ]
        )
    )
    test = setup.field.values(setup.test_times)
    train = setup.field.values(np.random.default_rng(5).choice(setup.train_times, size=len(samples), replace=False))
    max_lag = 12
    result = {}
    curves, correlations = {}, {}
    for name, fields in (("diffusion_samples", samples), ("training_fields", train)):
        result[name] = {
            "wasserstein1_K": wasserstein1(fields, test),
            "log10_spectrum_error": log_spectrum_error(fields, test),
            "autocorrelation_abs_error": float(
                np.mean(np.abs(autocorrelation(fields, max_lag) - autocorrelation(test, max_lag)))
            ),
        }
        curves[name] = power_spectrum(fields)
        correlations[name] = autocorrelation(fields, max_lag)
    curves["test_fields"] = power_spectrum(test)
    correlations["test_fields"] = autocorrelation(test, max_lag)
    result["n_samples"], result["n_test_fields"], result["seconds"] = len(samples), len(test), seconds
    return result, curves, correlations
