"""Benchmark ``kriging``: the local kriging a fill stands on, by number of neighbours, against PyKrige.

A residual fill is never better than the kriging it stands on by much more
than the network's correction, so that kriging's error is the fill's floor.
On every grid of ``bench geo`` (ERA5 t2m, CMIP precipitation, CMIP minimum
temperature) and its split (train on the days of the month 1..20, tune on
21..24, test after), the model space and the variogram are fitted as
``metamap geo train --task fill`` fits them. On the test fields under both
masks (``sparse90``, ``blobs40``) this scores:

- the local kriging of :mod:`metamap.geo.kriging` (octant search) with
  ``NEIGHBOURS`` neighbours, back in the file's unit;
- PyKrige ordinary kriging over all observed pixels, raw and on the anomaly
  from the climatology, the variogram model chosen on tuning fields (the
  ``kriging`` and ``kriging_anomaly`` baselines of ``metamap geo evaluate``).

RMSE is cos-latitude weighted over the missing pixels, in the file's unit;
seconds are per field on one thread. Headline: per grid and mask the local
kriging's RMSE over the better PyKrige at each neighbour count, and its
time over the 16-neighbour kriging (the default).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metamap.bench.geo.grids import GRIDS, grid_split
from metamap.bench.geo.settings import SCENARIOS
from metamap.geo import metrics
from metamap.geo.anomaly import field_fraction
from metamap.geo.data import PatchSource, check_patch, scan_training
from metamap.geo.evaluation import (
    KRIGING,
    TEST_SEED,
    TUNE_SEED,
    choose_variogram,
    kriging_fill,
    masked_case,
    scenario_masks,
)
from metamap.geo.fill import fit_variogram
from metamap.geo.kriging import NEIGHBOURS, krige
from metamap.geo.transforms import choose_transform
from metamap.plotting import pyplot, save_png
from metamap.report import format_table, machine, write_json

COUNTS = (8, 16, 32, 64)  # neighbours of the local kriging
FULL = {"fields": 24, "tuning_fields": 4}
QUICK = {"fields": 2, "tuning_fields": 1}


def grid_scores(name: str, fields: int, tuning_fields: int) -> dict[str, Any]:
    """``{scenario: {method: {"rmse": mean, "seconds": mean}}}`` on one grid of :data:`GRIDS`."""
    field, train_times, tune_times, test_times = grid_split(name)
    transform = choose_transform(field.attrs)
    scaler, _ = scan_training(field, train_times, transform, max_times=10_000)
    variogram = fit_variogram(PatchSource(field, scaler, train_times, check_patch(64)))
    fraction, lat, lon = field_fraction(field), field.lat, field.lon
    picks = np.sort(np.random.default_rng(0).choice(test_times, size=fields, replace=False))
    tune_picks = np.sort(np.random.default_rng(1).choice(tune_times, size=tuning_fields, replace=False))
    out: dict[str, Any] = {"variogram": variogram.to_json()}
    for scenario in SCENARIOS:
        masks = scenario_masks(scenario)
        tuning = [masked_case(field, scaler, fraction, masks, int(i), TUNE_SEED + n) for n, i in enumerate(tune_picks)]
        nonnegative = scaler.transform.nonnegative
        variograms = {m: choose_variogram(tuning, lat, lon, m == "kriging_anomaly", nonnegative) for m in KRIGING}
        rmse: dict[str, list[float]] = {}
        seconds: dict[str, list[float]] = {}
        for number, index in enumerate(map(int, picks)):
            c = masked_case(field, scaler, fraction, masks, index, TEST_SEED + number)
            z = scaler.to_model(c.hidden[None], fraction[index : index + 1])[0]
            for count in COUNTS:
                started = time.perf_counter()
                estimate, _ = krige(z, c.observed, variogram, count)
                seconds.setdefault(f"local_{count}", []).append(time.perf_counter() - started)
                filled = scaler.from_model(estimate[None, None], fraction[index : index + 1])[0, 0]
                rmse.setdefault(f"local_{count}", []).append(metrics.rmse(filled, c.truth, lat, c.gaps))
            for method in KRIGING:
                started = time.perf_counter()
                mean, _ = kriging_fill(c, lat, lon, method == "kriging_anomaly", variograms[method], nonnegative)
                seconds.setdefault(method, []).append(time.perf_counter() - started)
                rmse.setdefault(method, []).append(metrics.rmse(mean, c.truth, lat, c.gaps))
        out[scenario] = {m: {"rmse": statistics.fmean(rmse[m]), "seconds": statistics.fmean(seconds[m])} for m in rmse}
        out[scenario]["variograms"] = variograms
    return out


def _headline(grids: dict[str, Any]) -> dict[str, Any]:
    headline: dict[str, Any] = {}
    for name, scores in grids.items():
        for scenario in SCENARIOS:
            cells = scores[scenario]
            reference = min(cells[m]["rmse"] for m in KRIGING)
            for count in COUNTS:
                cell = cells[f"local_{count}"]
                headline[f"{name}_{scenario}_local{count}_rmse_ratio_vs_pykrige"] = cell["rmse"] / reference
                headline[f"{name}_{scenario}_local{count}_time_ratio_vs_local{NEIGHBOURS}"] = (
                    cell["seconds"] / cells[f"local_{NEIGHBOURS}"]["seconds"]
                )
    return headline


def _plot(grids: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(SCENARIOS), figsize=(10, 4), squeeze=False)
    for ax, scenario in zip(axes[0], SCENARIOS):
        for name, scores in grids.items():
            cells = scores[scenario]
            reference = min(cells[m]["rmse"] for m in KRIGING)
            ax.plot(COUNTS, [cells[f"local_{k}"]["rmse"] / reference for k in COUNTS], marker="o", label=name)
        ax.axhline(1.0, color="grey", linestyle=":", label="better PyKrige")
        ax.set_xscale("log", base=2)
        ax.set_xticks(COUNTS, [str(k) for k in COUNTS])
        ax.set_xlabel("neighbours of the local kriging")
        ax.set_ylabel("RMSE over the better PyKrige")
        ax.set_title(scenario)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)


def run(quick: bool, json_path: Path) -> dict[str, Any]:
    torch.set_num_threads(1)
    cfg = QUICK if quick else FULL
    started = time.perf_counter()
    grids = {}
    for name in GRIDS:
        print(f"kriging: {name}", flush=True)
        grids[name] = grid_scores(name, cfg["fields"], cfg["tuning_fields"])
    headline = _headline(grids)
    for name, scores in grids.items():
        for scenario in SCENARIOS:
            cells = {m: v for m, v in scores[scenario].items() if m != "variograms"}
            rows = [[m, f"{v['rmse']:.4g}", f"{v['seconds'] * 1e3:.1f}"] for m, v in cells.items()]
            print(f"\n{name} {scenario} ({cfg['fields']} fields)")
            print(format_table(["method", "RMSE (file unit)", "ms per field"], rows))
    result = {
        "benchmark": "kriging",
        "quick": quick,
        "headline": headline,
        "grids": grids,
        "config": {**cfg, "neighbours": list(COUNTS)},
        "wall_seconds": time.perf_counter() - started,
        "machine": machine(),
        "notes": __doc__,
    }
    write_json(json_path, result)
    _plot(grids, json_path.with_suffix(".png"))
    return result
