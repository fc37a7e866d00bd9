"""Gap-filling: every method on both missing-data scenarios, with the variogram chosen on training fields."""

from __future__ import annotations

from typing import Any

import numpy as np

from metamap.bench.geo.scoring import ensemble_scores, point_scores, summarize, timed
from metamap.bench.geo.settings import MEMBERS, SCENARIOS, Settings
from metamap.bench.geo.training import Setup
from metamap.geo import baselines, metrics
from metamap.geo.fill import conditional_fill, inpaint_fill
from metamap.geo.masks import make_mask
from metamap.geo.models import GeoModel


def choose_variogram(setup: Setup, kind: str, missing: float, anomaly: bool | None, n: int) -> str:
    """The variogram model with the lowest RMSE on ``n`` training fields (never the test data); ``anomaly``:
    krige the anomaly from the seasonal climatology."""
    rng = np.random.default_rng(7)
    picks = rng.choice(setup.train_times, size=n, replace=False)
    errors = {}
    for variogram in baselines.VARIOGRAMS:
        scores = []
        for index in picks:
            truth = setup.field.values(slice(int(index), int(index) + 1))[0]
            observed = make_mask(kind, truth.shape, missing, rng)
            background = setup.climatology(int(index)) if anomaly else None
            mean, _ = baselines.ordinary_kriging(truth, observed, setup.lat, setup.lon, variogram, background)
            scores.append(metrics.rmse(mean, truth, setup.lat, ~observed))
        errors[variogram] = float(np.mean(scores))
    return min(errors, key=errors.get)


def fill_benchmark(settings: Settings, setup: Setup, models: dict[str, GeoModel], peer_fill, rng_seed: int = 0):
    """Every gap-filling method on both scenarios; returns (results, rank histograms, an example)."""
    from metamap.progress import progress_bar

    rng = np.random.default_rng(rng_seed)
    picks = np.sort(rng.choice(setup.test_times, size=settings.fill_fields, replace=False))
    slow = set(np.linspace(0, len(picks) - 1, settings.slow_fields).round().astype(int).tolist())
    lat = setup.lat
    results: dict[str, Any] = {}
    histograms: dict[str, np.ndarray] = {}
    example = None
    for scenario, (kind, missing) in SCENARIOS.items():
        variograms = {
            name: choose_variogram(setup, kind, missing, bg, settings.kriging_tuning_fields)
            for name, bg in (("kriging", None), ("kriging_anomaly", True))
        }
        rows: dict[str, list[dict[str, float]]] = {}
        times: dict[str, list[float]] = {}
        hist_rng = np.random.default_rng(1)
        hist: dict[str, np.ndarray] = {}

        def record(name: str, scores: dict[str, float], seconds: float) -> None:
            rows.setdefault(name, []).append(scores)
            times.setdefault(name, []).append(seconds)

        for number, index in enumerate(progress_bar(picks, desc=f"fill {scenario}")):
            truth = setup.field.values(slice(int(index), int(index) + 1))[0]
            climatology = setup.climatology(int(index))
            observed = make_mask(kind, truth.shape, missing, np.random.default_rng(1000 + number))
            hidden = np.where(observed, truth, np.nan)
            gaps = ~observed
            point = {
                "field_mean": lambda: baselines.field_mean(hidden, observed),
                "field_mean_anomaly": lambda: baselines.field_mean(hidden, observed, climatology),
                "linear": lambda: baselines.interpolate(hidden, observed, lat, setup.lon, "linear"),
                "cubic": lambda: baselines.interpolate(hidden, observed, lat, setup.lon, "cubic"),
                "linear_anomaly": lambda: baselines.interpolate(
                    hidden, observed, lat, setup.lon, "linear", climatology
                ),
            }
            for name, fn in point.items():
                filled, seconds = timed(fn)
                record(name, point_scores(filled, truth, gaps, lat), seconds)
            for name, background in (("kriging", None), ("kriging_anomaly", climatology)):
                (mean, variance), seconds = timed(
                    lambda: baselines.ordinary_kriging(hidden, observed, lat, setup.lon, variograms[name], background)
                )
                record(
                    name,
                    {
                        "rmse": metrics.rmse(mean, truth, lat, gaps),
                        "crps": metrics.gaussian_crps(mean, np.sqrt(variance), truth, lat, gaps),
                    },
                    seconds,
                )
            ensemble, seconds = timed(
                lambda: conditional_fill(
                    models["fill"],
                    setup.to_model(hidden, int(index)),
                    setup.static,
                    members=MEMBERS,
                    steps=settings.fill_steps,
                    seed=number,
                )
            )
            ensemble_k = setup.from_model(ensemble, int(index))
            record("diffusion_conditional", ensemble_scores(ensemble_k, truth, gaps, lat), seconds)
            hist.setdefault("diffusion_conditional", 0)
            hist["diffusion_conditional"] = hist["diffusion_conditional"] + metrics.rank_histogram(
                ensemble_k, truth, hist_rng, gaps
            )
            if example is None and scenario == "sparse90":
                example = (truth, hidden, ensemble_k)
            if number not in slow:
                continue
            record("diffusion_conditional_subset", ensemble_scores(ensemble_k, truth, gaps, lat), seconds)
            ensemble, seconds = timed(
                lambda: inpaint_fill(
                    models["generate"],
                    setup.to_model(hidden, int(index)),
                    setup.static,
                    members=MEMBERS,
                    steps=settings.inpaint_steps,
                    sampler="ddpm",
                    resample=settings.inpaint_resample,
                    seed=number,
                )
            )
            record(
                "diffusion_inpaint_subset",
                ensemble_scores(setup.from_model(ensemble, int(index)), truth, gaps, lat),
                seconds,
            )
            if peer_fill is not None:
                ensemble, seconds = timed(lambda: peer_fill(setup.to_model(hidden, int(index)), number))
                record(
                    "repaint_peer_subset",
                    ensemble_scores(setup.from_model(ensemble, int(index)), truth, gaps, lat),
                    seconds,
                )
        results[scenario] = {
            "variograms": variograms,
            "methods": {name: summarize(rows[name], times[name]) for name in rows},
        }
        histograms.update({f"{name} {scenario}": counts for name, counts in hist.items()})
    return results, histograms, example
