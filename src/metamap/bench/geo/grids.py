"""Gap-filling on every bundled grid: the residual fill model against kriging (raw and on the anomaly).

Grids: ERA5 t2m (hourly, March 2019), CMIP daily precipitation (365-day
calendar) and CMIP daily minimum temperature (360-day calendar). Each grid:
train on the days of the month 1..20 (model space, climatology and model
fitted there only), validate on days 21..24 (the spread scale of
:mod:`metamap.geo.calibration`, per scenario), test on the days after; a
fill model per grid with the same short budget; both scenarios on
``grid_fields`` test fields. Kriging's
variogram is the exponential one (the variogram choice of the ERA5 part is
not repeated here, to fit the budget). Scores on the missing pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from metamap.bench.geo.scoring import ensemble_scores, summarize
from metamap.bench.geo.settings import MEMBERS, SCENARIOS, TRAIN_DAYS, Settings
from metamap.bench.geo.training import make_setup, train_model
from metamap.geo import baselines, metrics
from metamap.geo.calibration import apply_spread_scale, fit_spread_scale
from metamap.geo.fill import conditional_fill
from metamap.geo.io import open_field
from metamap.geo.masks import make_mask
from metamap.geo.transforms import dry_accuracy, fraction_negative
from metamap.paths import shared_data_dir

VALIDATION_FROM = 21  # days 21..TRAIN_DAYS of each month: validation (calibration), never trained on
GRIDS = {
    "era5_t2m": ("era5_t2m_uk_2019-03.nc", "t2m"),
    "cmip_pr": ("cmip_pr_day_CanESM2_2095.nc", "pr"),
    "cmip_tasmin": ("cmip_tasmin_day_HadGEM2-CC_2095.nc", "tasmin"),
}


def grid_benchmark(name: str, settings: Settings, runs: Path) -> dict[str, Any]:
    """Scores of kriging (raw, anomaly) and the residual fill model on one grid of :data:`GRIDS`."""
    from metamap.progress import progress_bar

    filename, var = GRIDS[name]
    field = open_field(shared_data_dir() / "geo" / filename, var)
    field.data = field.data.load()
    days = field.day_of_month()
    train_times = np.flatnonzero(days <= VALIDATION_FROM - 1)
    val_times = np.flatnonzero((days >= VALIDATION_FROM) & (days <= TRAIN_DAYS))
    test_times = np.flatnonzero(days > TRAIN_DAYS)
    model = train_model(field, "fill", train_times, settings.grid_budget, settings, runs / name)
    setup = make_setup(model, field, train_times, test_times)
    nonnegative = setup.scaler.transform.nonnegative
    picks = np.sort(np.random.default_rng(0).choice(test_times, size=settings.grid_fields, replace=False))
    val_picks = np.sort(np.random.default_rng(1).choice(val_times, size=settings.grid_fields // 2, replace=False))
    out: dict[str, Any] = {"training": {"steps": model.trained.step, "seconds": model.trained.seconds}}
    for scenario, (kind, missing) in SCENARIOS.items():

        def fill(index: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
            """(model-space ensemble, truth, observed, hidden field) of time ``index``."""
            truth = field.values(slice(index, index + 1))[0]
            observed = make_mask(kind, truth.shape, missing, np.random.default_rng(seed))
            hidden = np.where(observed, truth, np.nan)
            z = conditional_fill(
                model, setup.to_model(hidden, index), setup.static, MEMBERS, settings.fill_steps, seed=seed
            )
            return z, truth, observed, hidden

        validation = [fill(int(index), 5000 + n) for n, index in enumerate(val_picks)]
        scale = fit_spread_scale(
            [z for z, *_ in validation],
            [setup.to_model(t, int(i)) for (_, t, _, _), i in zip(validation, val_picks, strict=True)],
            [~o for _, _, o, _ in validation],
        )
        rows: dict[str, list[dict[str, float]]] = {}
        fills = []
        for number, index in enumerate(progress_bar(picks, desc=f"{name} {scenario}")):
            z, truth, observed, hidden = fill(int(index), 1000 + number)
            gaps = ~observed
            for method, background in (("kriging", None), ("kriging_anomaly", setup.climatology(int(index)))):
                mean, variance = baselines.ordinary_kriging(
                    hidden, observed, setup.lat, setup.lon, background=background, nonnegative=nonnegative
                )
                rows.setdefault(method, []).append(
                    {
                        "rmse": metrics.rmse(mean, truth, setup.lat, gaps),
                        "crps": metrics.gaussian_crps(mean, np.sqrt(variance), truth, setup.lat, gaps),
                    }
                )
            raw = setup.from_model(z, int(index))
            rows.setdefault("diffusion_residual_uncalibrated", []).append(ensemble_scores(raw, truth, gaps, setup.lat))
            ensemble = setup.from_model(apply_spread_scale(z, scale), int(index))
            ensemble[:, observed] = truth[observed]
            rows.setdefault("diffusion_residual", []).append(ensemble_scores(ensemble, truth, gaps, setup.lat))
            fills.append((ensemble, truth, gaps))
        methods = {method: summarize(scores) for method, scores in rows.items()}
        reference = min(("kriging", "kriging_anomaly"), key=lambda m: methods[m]["rmse"])
        ours = methods["diffusion_residual"]
        entry = {
            "methods": methods,
            "spread_scale": scale,
            "kriging_reference": reference,
            "rmse_ratio_vs_kriging": ours["rmse"] / methods[reference]["rmse"],
            "crps_ratio_vs_kriging": ours["crps"] / methods[reference]["crps"],
            "spread_skill": ours["spread_skill"],
        }
        if nonnegative:
            threshold = setup.scaler.transform.dry_threshold
            entry["fraction_negative"] = max(fraction_negative(e) for e, _, _ in fills)
            entry["dry_accuracy"] = float(
                np.mean([dry_accuracy(e.mean(axis=0)[g], t[g], threshold) for e, t, g in fills])
            )
        out[scenario] = entry
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
