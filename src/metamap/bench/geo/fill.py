"""Gap-filling: every method on both missing-data scenarios, with the variogram chosen on training fields."""

from __future__ import annotations

from typing import Any

import numpy as np

from metamap.bench.geo.settings import MEMBERS, SCENARIOS, Settings
from metamap.bench.geo.training import Setup
from metamap.geo import metrics
from metamap.geo.evaluation import KRIGING, Case, baseline_scores, choose_variogram, ensemble_scores, summarize, timed
from metamap.geo.fill import conditional_fill, inpaint_fill
from metamap.geo.masks import make_mask
from metamap.geo.models import GeoModel


def tuning_cases(setup: Setup, kind: str, missing: float, n: int) -> list[Case]:
    """``n`` training fields (never the test data) with masks of the scenario, to choose the variograms on."""
    rng = np.random.default_rng(7)
    picks = rng.choice(setup.train_times, size=n, replace=False)
    cases = []
    for index in picks:
        truth = setup.field.values(slice(int(index), int(index) + 1))[0]
        cases.append(Case(truth, make_mask(kind, truth.shape, missing, rng), setup.climatology(int(index))))
    return cases


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
        tuning = tuning_cases(setup, kind, missing, settings.kriging_tuning_fields)
        variograms = {name: choose_variogram(tuning, lat, setup.lon, name == "kriging_anomaly") for name in KRIGING}
        rows: dict[str, list[dict[str, float]]] = {}
        times: dict[str, list[float]] = {}
        hist_rng = np.random.default_rng(1)
        hist: dict[str, np.ndarray] = {}

        def record(name: str, scores: dict[str, float], seconds: float) -> None:
            rows.setdefault(name, []).append(scores)
            times.setdefault(name, []).append(seconds)

        for number, index in enumerate(progress_bar(picks, desc=f"fill {scenario}")):
            truth = setup.field.values(slice(int(index), int(index) + 1))[0]
            observed = make_mask(kind, truth.shape, missing, np.random.default_rng(1000 + number))
            case = Case(truth, observed, setup.climatology(int(index)))
            hidden, gaps = case.hidden, case.gaps
            for name, (scores, seconds, _) in baseline_scores(case, lat, setup.lon, variograms).items():
                record(name, scores, seconds)
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
