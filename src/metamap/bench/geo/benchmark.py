"""The geo benchmark's run: train the models, score fill, forecast and generation, write the JSON and plots."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metamap.bench.cache import runs_folder
from metamap.bench.geo.fill import fill_benchmark
from metamap.bench.geo.forecast import forecast_benchmark
from metamap.bench.geo.generation import generation_benchmark
from metamap.bench.geo.grids import GRIDS, grid_benchmark, grids_headline
from metamap.bench.geo.settings import FORECAST_LEADS, FULL, QUICK, TRAIN_DAYS, K
from metamap.bench.geo.summary import NOTES, check_goals, make_headline, print_tables
from metamap.bench.geo.training import make_setup, train_model, train_peer, training_info
from metamap.geo import plots
from metamap.geo.data import PatchSource
from metamap.geo.forecast import forecast_batches, train_deterministic
from metamap.geo.io import open_field
from metamap.paths import shared_data_dir
from metamap.report import machine, write_json


def run(quick: bool, json_path: Path) -> dict[str, Any]:
    torch.set_num_threads(1)
    settings = QUICK if quick else FULL
    json_path = Path(json_path)
    runs = runs_folder(json_path, quick)
    field = open_field(shared_data_dir() / "geo" / "era5_t2m_uk_2019-03.nc", "t2m")
    field.data = field.data.load()
    days = field.day_of_month()
    train_times, test_times = np.flatnonzero(days <= TRAIN_DAYS), np.flatnonzero(days > TRAIN_DAYS)
    wall = time.perf_counter()

    models = {
        task: train_model(field, task, train_times, getattr(settings, f"{task}_budget"), settings, runs)
        for task in ("fill", "generate", "forecast")
    }
    setup = make_setup(models["fill"], field, train_times, test_times)
    steps_done = models["forecast"].trained.step

    source = PatchSource(field, setup.scaler, train_times, (64, 64), n_times=K + 6, seed=0)
    scales = models["forecast"].meta["increment_std"]
    batches = forecast_batches(source, settings.batch, K, scales, seed=0)
    deterministic = train_deterministic(
        batches,
        K,
        steps=steps_done,
        base=settings.base,
        max_seconds=settings.deterministic_budget[1],
        run_dir=runs / "deterministic",
    )
    peer_fill, peer_info = train_peer(settings, field, setup, train_times, runs, models["fill"])

    fill, histograms, example = fill_benchmark(settings, setup, models, peer_fill)
    forecast, forecast_hist = forecast_benchmark(settings, setup, models["forecast"], deterministic)
    histograms["diffusion forecast +6 h"] = forecast_hist
    generation, curves, correlations = generation_benchmark(settings, setup, models["generate"])

    grids = {name: grid_benchmark(name, settings, runs / "grids") for name in GRIDS}
    headline = {**make_headline(fill, forecast), **grids_headline(grids)}
    result = {
        "benchmark": "geo",
        "quick": quick,
        "headline": headline,
        "goals": check_goals(headline),
        "fill": fill,
        "forecast": forecast,
        "generation": generation,
        "grids": grids,
        "training": {name: training_info(m) for name, m in models.items()},
        "peer": peer_info,
        "settings": settings.__dict__,
        "wall_seconds": time.perf_counter() - wall,
        "machine": machine(),
        "notes": NOTES,
    }
    write_json(json_path, result)
    plots.rank_histograms(histograms, json_path.with_suffix(".png"))
    plots.spectra(curves, json_path.with_name(f"{json_path.stem}_generation.png"), correlations)
    truth, hidden, ensemble = example
    plots.fields(
        [
            ("truth", truth),
            ("observed (10 %)", hidden),
            ("member 1", ensemble[0]),
            ("member 2", ensemble[1]),
            ("ensemble mean", ensemble.mean(axis=0)),
        ],
        json_path.with_name(f"{json_path.stem}_fill.png"),
        setup.lat,
        setup.lon,
        "K",
        own_scale=[("ensemble std", ensemble.std(axis=0), "viridis")],
    )
    plots.by_lead(
        {
            name: [forecast["methods"][name][str(lead)]["crps"] for lead in FORECAST_LEADS]
            for name in forecast["methods"]
        },
        FORECAST_LEADS,
        json_path.with_name(f"{json_path.stem}_forecast.png"),
        "CRPS (K)",
    )
    print_tables(result)
    return result
