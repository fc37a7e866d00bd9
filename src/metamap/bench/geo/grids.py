"""Gap-filling on every bundled grid: the residual fill model against kriging (raw and on the anomaly).

Grids: ERA5 t2m (hourly, March 2019), CMIP daily precipitation (365-day
calendar) and CMIP daily minimum temperature (360-day calendar). Each grid:
train on the days of the month 1..20 (model space, climatology and model
fitted there only), tune on days 21..24 (kriging's variograms and the spread
calibration of :mod:`metamap.geo.calibration`, per scenario), test on the days
after; a fill model per grid with the same short budget; both scenarios on
``grid_fields`` test fields. The scoring is ``metamap geo evaluate``'s
(:func:`metamap.geo.evaluation.evaluate_fill`): every baseline, the raw and
the calibrated ensemble, on the missing pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from metamap.bench.geo.settings import MEMBERS, SCENARIOS, TRAIN_DAYS, Settings
from metamap.bench.geo.training import train_model
from metamap.geo.evaluation import evaluate_fill, scenario_masks
from metamap.geo.io import GeoField, open_field
from metamap.paths import shared_data_dir

VALIDATION_FROM = 21  # days 21..TRAIN_DAYS of each month: validation (calibration), never trained on
GRIDS = {
    "era5_t2m": ("era5_t2m_uk_2019-03.nc", "t2m"),
    "cmip_pr": ("cmip_pr_day_CanESM2_2095.nc", "pr"),
    "cmip_tasmin": ("cmip_tasmin_day_HadGEM2-CC_2095.nc", "tasmin"),
}


def grid_split(name: str) -> tuple[GeoField, np.ndarray, np.ndarray, np.ndarray]:
    """The grid ``name`` of :data:`GRIDS`, read into memory, and its training, validation and test time
    indices (days of the month 1..20, 21..``TRAIN_DAYS``, after)."""
    filename, var = GRIDS[name]
    field = open_field(shared_data_dir() / "geo" / filename, var)
    field.data = field.data.load()
    days = field.day_of_month()
    train_times = np.flatnonzero(days <= VALIDATION_FROM - 1)
    val_times = np.flatnonzero((days >= VALIDATION_FROM) & (days <= TRAIN_DAYS))
    test_times = np.flatnonzero(days > TRAIN_DAYS)
    return field, train_times, val_times, test_times


def grid_benchmark(name: str, settings: Settings, runs: Path) -> dict[str, Any]:
    """Scores of kriging (raw, anomaly) and the residual fill model on one grid of :data:`GRIDS`."""
    field, train_times, val_times, test_times = grid_split(name)
    model = train_model(field, "fill", train_times, settings.grid_budget, settings, runs / name)
    picks = np.sort(np.random.default_rng(0).choice(test_times, size=settings.grid_fields, replace=False))
    val_picks = np.sort(np.random.default_rng(1).choice(val_times, size=settings.grid_fields, replace=False))
    out: dict[str, Any] = {"training": {"steps": model.trained.step, "seconds": model.trained.seconds}}
    for scenario in SCENARIOS:
        evaluation = evaluate_fill(
            model,
            field,
            picks,
            val_picks,
            scenario_masks(scenario),
            members=MEMBERS,
            steps=settings.fill_steps,
            desc=f"{name} {scenario}",
        )
        out[scenario] = evaluation.summary
    return out


def grids_headline(grids: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``<grid>_rmse_ratio_vs_kriging_<scenario>``, ``<grid>_spread_skill_sparse90`` and the worst ratio."""
    out: dict[str, Any] = {}
    for name, result in grids.items():
        for scenario in SCENARIOS:
            out[f"{name}_rmse_ratio_vs_kriging_{scenario}"] = result[scenario]["rmse_ratio_vs_kriging"]
        out[f"{name}_spread_skill_sparse90"] = result["sparse90"]["spread_skill"]
    ratios = [v for k, v in out.items() if "_rmse_ratio_vs_kriging_" in k]
    out["worst_rmse_ratio_vs_kriging"] = max(ratios) if ratios else None
    return out
