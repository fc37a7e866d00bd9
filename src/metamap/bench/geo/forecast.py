"""Forecasting: the diffusion ensemble per lead against persistence and the deterministic UNet."""

from __future__ import annotations

import statistics

import numpy as np
import torch

from metamap.bench.geo.settings import FORECAST_LEADS, MEMBERS, K, Settings
from metamap.bench.geo.training import Setup
from metamap.geo import metrics
from metamap.geo.evaluation import ensemble_scores, point_scores, summarize, timed
from metamap.geo.forecast import deterministic_forecast, diffusion_forecast
from metamap.geo.models import GeoModel


def forecast_benchmark(settings: Settings, setup: Setup, model: GeoModel, deterministic: torch.nn.Module):
    """Ensemble CRPS / RMSE / spread-skill per lead against persistence and the deterministic UNet."""
    from metamap.progress import progress_bar

    lat = setup.lat
    test = set(int(t) for t in setup.test_times)
    starts = [t for t in sorted(test) if all(t + d in test for d in range(-K + 1, max(FORECAST_LEADS) + 1))]
    rng = np.random.default_rng(3)
    picks = np.sort(rng.choice(starts, size=min(settings.forecast_cases, len(starts)), replace=False))
    rows: dict[str, dict[int, list[dict[str, float]]]] = {}
    times: list[float] = []
    histogram = 0
    for number, start in enumerate(progress_bar(picks, desc="forecast")):
        raw = setup.field.values(slice(int(start) - K + 1, int(start) + max(FORECAST_LEADS) + 1))
        history = setup.to_model(raw[:K], np.arange(int(start) - K + 1, int(start) + 1))
        ensembles, seconds = timed(
            lambda: diffusion_forecast(
                model,
                history,
                setup.static,
                list(FORECAST_LEADS),
                members=MEMBERS,
                steps=settings.fill_steps,
                seed=number,
            )
        )
        times.append(seconds / len(FORECAST_LEADS))
        unet_z = deterministic_forecast(
            deterministic, history, setup.static, list(FORECAST_LEADS), model.meta["increment_std"]
        )
        unet = [setup.from_model(unet_z[i], int(start) + lead) for i, lead in enumerate(FORECAST_LEADS)]
        for i, lead in enumerate(FORECAST_LEADS):
            truth = raw[K - 1 + lead]
            ensemble_k = setup.from_model(ensembles[i], int(start) + lead)
            scores = {
                "diffusion": ensemble_scores(ensemble_k, truth, None, lat),
                "persistence": point_scores(raw[K - 1], truth, None, lat),
                "deterministic_unet": point_scores(unet[i], truth, None, lat),
            }
            for name, value in scores.items():
                rows.setdefault(name, {}).setdefault(lead, []).append(value)
            if lead == max(FORECAST_LEADS):
                histogram = histogram + metrics.rank_histogram(ensemble_k, truth, rng)
    out = {name: {str(lead): summarize(values) for lead, values in by_lead.items()} for name, by_lead in rows.items()}
    return {"methods": out, "seconds_per_lead_median": statistics.median(times), "n_cases": len(picks)}, histogram
