"""Benchmark ``geo``: diffusion gap-filling, forecasting and generation on ERA5 2 m temperature over the UK.

Data: ``geo/era5_t2m_uk_2019-03.nc`` (hourly, March 2019, 33 x 49 at 0.25
degrees). Train on days 1-24 (the standardization too), test on days 25-31.

- Gap-filling: a fixed set of test fields (seeded), two scenarios: 90 %
  missing as sparse stations and 40 % missing as 2-3 cloud blobs. Methods:
  field mean, linear and cubic interpolation, ordinary kriging (variogram
  model chosen per scenario on training fields, parameters fitted per field;
  on the raw field and on the anomaly from the training climatology, the
  better of the two is the reference), our conditional diffusion model and
  our training-free inpainting (both 16 members), and the RePaint peer
  (:mod:`metamap.bench.repaint_peer`). Scores on the missing pixels: RMSE
  (ensemble mean), fair CRPS (kriging: closed-form Gaussian CRPS), spread/skill.
- Forecast: one conditional diffusion model for leads 1..6 h given the
  previous 3 fields (the lead is a conditioning channel), 16 members; against
  persistence (CRPS = MAE) and a deterministic UNet of the same widths
  trained with MSE for the same number of steps.
- Generation: samples of the static-conditioned model against held-out test
  fields: Wasserstein-1 of the marginal, radially averaged power spectrum,
  spatial autocorrelation; training fields are the reference point.

Training runs are kept in ``<json stem>_runs/`` and reused by a rerun.
Every training has a wall-clock cap (``BUDGET``); the JSON states it and the
steps actually done.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metamap.bench.cache import runs_folder
from metamap.geo import baselines, metrics, plots
from metamap.geo.data import PatchSource, static_channels
from metamap.geo.fill import conditional_fill, inpaint_fill
from metamap.geo.forecast import deterministic_forecast, diffusion_forecast, forecast_batches, train_deterministic
from metamap.geo.generate import (
    autocorrelation,
    generate,
    generation_batches,
    log_spectrum_error,
    power_spectrum,
    wasserstein1,
)
from metamap.geo.io import GeoField, open_field
from metamap.geo.masks import make_mask
from metamap.geo.models import GeoModel
from metamap.geo.train import train_task
from metamap.paths import shared_data_dir
from metamap.preprocessing import Standardizer
from metamap.report import format_table, machine, mean_ci95, write_json

TRAIN_DAYS = 24
K = 3
MEMBERS = 16
SCENARIOS = {"sparse90": ("stations", 0.9), "blobs40": ("blobs", 0.4)}
FORECAST_LEADS = (1, 3, 6)
LR = 5e-4


@dataclass(frozen=True)
class Settings:
    """Sizes and budgets of one benchmark flavour (full or quick)."""

    fill_fields: int = 24  # test fields per gap-filling scenario
    slow_fields: int = 4  # of them, those also filled by the slow resampling methods
    kriging_tuning_fields: int = 8  # training fields used to choose the variogram model
    forecast_cases: int = 12
    generated: int = 64
    base: int = 16
    batch: int = 16
    fill_steps: int = 20  # DPM-Solver++ steps (conditional fill, forecast, generation)
    inpaint_steps: int = 25  # DDPM steps of the training-free inpainting ...
    inpaint_resample: int = 4  # ... each repeated this often (RePaint)
    repaint_steps: int = 50  # the peer's RePaintScheduler: steps, jump length, jumps
    repaint_jump: int = 10
    repaint_jump_n_sample: int = 4
    # training budget: (max optimizer steps, max wall seconds) per model
    fill_budget: tuple[int, int] = (5000, 11 * 60)
    generate_budget: tuple[int, int] = (5000, 7 * 60)
    peer_budget: tuple[int, int] = (5000, 7 * 60)
    forecast_budget: tuple[int, int] = (5000, 7 * 60)
    deterministic_budget: tuple[int, int] = (5000, 4 * 60)


FULL = Settings()
QUICK = Settings(
    fill_fields=2,
    slow_fields=1,
    kriging_tuning_fields=1,
    forecast_cases=1,
    generated=16,
    base=8,
    batch=2,
    fill_steps=2,
    inpaint_steps=2,
    inpaint_resample=1,
    repaint_steps=4,
    repaint_jump=2,
    repaint_jump_n_sample=1,
    fill_budget=(3, 30),
    generate_budget=(3, 30),
    peer_budget=(3, 30),
    forecast_budget=(3, 30),
    deterministic_budget=(3, 30),
)


@dataclass
class Setup:
    field: GeoField
    train_times: np.ndarray
    test_times: np.ndarray
    climatology: np.ndarray  # per-pixel training mean [H, W], K
    standardizer: Standardizer
    static: np.ndarray  # [2, H, W]
    lat: np.ndarray
    lon: np.ndarray


def _setup(model: GeoModel, field: GeoField, train_times: np.ndarray, test_times: np.ndarray) -> Setup:
    meta = model.meta
    return Setup(
        field,
        train_times,
        test_times,
        model.standardizer.mean_.astype(np.float32),
        model.standardizer,
        static_channels(field.lat, field.lon, meta["lat_range"], meta["lon_range"]),
        field.lat,
        field.lon,
    )


def _train(
    field: GeoField, task: str, times: np.ndarray, budget: tuple[int, int], settings: Settings, runs: Path
) -> GeoModel:
    steps, seconds = budget
    return train_task(
        field,
        task,
        times,
        steps=steps,
        max_seconds=seconds,
        run_dir=runs / task,
        lr=LR,
        batch=settings.batch,
        patch=64,
        k=K,
        base=settings.base,
        max_scan=10_000,
        progress=True,
    )


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _summary(per_field: list[dict[str, float]], seconds: list[float] | None = None) -> dict[str, Any]:
    """Mean and 95% CI half-width of each score over fields; the median seconds per field."""
    out: dict[str, Any] = {}
    for key in per_field[0]:
        mean, ci = mean_ci95([row[key] for row in per_field])
        out[key], out[f"{key}_ci95"] = mean, ci
    if seconds is not None:
        out["seconds_median"] = statistics.median(seconds)
    out["n_fields"] = len(per_field)
    out["rmse_per_field"] = [row["rmse"] for row in per_field]
    return out


def _ensemble_scores(
    ensemble_k: np.ndarray, truth: np.ndarray, missing: np.ndarray | None, lat: np.ndarray
) -> dict[str, float]:
    return {
        "rmse": metrics.ensemble_mean_rmse(ensemble_k, truth, lat, missing),
        "crps": metrics.fair_crps(ensemble_k, truth, lat, missing),
        "spread_skill": metrics.spread_skill(ensemble_k, truth, lat, missing),
    }


def _point_scores(
    prediction: np.ndarray, truth: np.ndarray, mask: np.ndarray | None, lat: np.ndarray
) -> dict[str, float]:
    """A deterministic field's RMSE and CRPS (= MAE)."""
    return {"rmse": metrics.rmse(prediction, truth, lat, mask), "crps": metrics.mae(prediction, truth, lat, mask)}


def _choose_variogram(setup: Setup, kind: str, missing: float, background: np.ndarray | None, n: int) -> str:
    """The variogram model with the lowest RMSE on ``n`` training fields (never the test data)."""
    rng = np.random.default_rng(7)
    picks = rng.choice(setup.train_times, size=n, replace=False)
    errors = {}
    for variogram in baselines.VARIOGRAMS:
        scores = []
        for index in picks:
            truth = setup.field.values(slice(int(index), int(index) + 1))[0]
            observed = make_mask(kind, truth.shape, missing, rng)
            mean, _ = baselines.ordinary_kriging(truth, observed, setup.lat, setup.lon, variogram, background)
            scores.append(metrics.rmse(mean, truth, setup.lat, ~observed))
        errors[variogram] = float(np.mean(scores))
    return min(errors, key=errors.get)


def _peer(
    settings: Settings, field: GeoField, setup: Setup, train_times: np.ndarray, runs: Path, reference_parameters: int
):
    """Train (or resume) the RePaint peer on the generation model's batches without the static channels.

    Returns ``(fill(values [H, W] standardized with NaN, seed) -> [M, H, W], info)``.
    """
    from metamap.bench.repaint_peer import train_repaint_peer
    from metamap.diffusion.schedules import NoiseSchedule

    steps, seconds = settings.peer_budget
    source = PatchSource(field, setup.standardizer, train_times, (64, 64), seed=0)
    make = generation_batches(source, settings.batch)
    peer = train_repaint_peer(
        lambda: {k: v for k, v in make().items() if k != "cond"},
        channels=1,
        reference_parameters=reference_parameters,
        schedule=NoiseSchedule.cosine(1000),
        steps=steps,
        lr=LR,
        seed=0,
        run_dir=runs / "peer",
        max_seconds=seconds,
    )

    def fill(values: np.ndarray, seed: int) -> np.ndarray:
        field_t = torch.from_numpy(values)
        observed = torch.isfinite(field_t)
        known = torch.nan_to_num(field_t)[None, None].expand(MEMBERS, 1, -1, -1)
        mask = observed[None, None].expand(MEMBERS, 1, -1, -1)
        out = peer.inpaint(
            known,
            mask,
            steps=settings.repaint_steps,
            jump_length=settings.repaint_jump,
            jump_n_sample=settings.repaint_jump_n_sample,
            generator=torch.Generator().manual_seed(seed),
        )
        return out[:, 0].numpy()

    info = {
        "steps": peer.trained.step,
        "seconds": peer.trained.seconds,
        "n_parameters": peer.n_parameters,
        "ours_n_parameters": reference_parameters,
    }
    return fill, info


def fill_benchmark(settings: Settings, setup: Setup, models: dict[str, GeoModel], peer_fill, rng_seed: int = 0):
    """Every gap-filling method on both scenarios; returns (results, rank histograms, an example)."""
    from metamap.progress import progress_bar

    rng = np.random.default_rng(rng_seed)
    picks = np.sort(rng.choice(setup.test_times, size=settings.fill_fields, replace=False))
    slow = set(np.linspace(0, len(picks) - 1, settings.slow_fields).round().astype(int).tolist())
    st, lat = setup.standardizer, setup.lat
    results: dict[str, Any] = {}
    histograms: dict[str, np.ndarray] = {}
    example = None
    for scenario, (kind, missing) in SCENARIOS.items():
        variograms = {
            name: _choose_variogram(setup, kind, missing, bg, settings.kriging_tuning_fields)
            for name, bg in (("kriging", None), ("kriging_anomaly", setup.climatology))
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
            observed = make_mask(kind, truth.shape, missing, np.random.default_rng(1000 + number))
            hidden = np.where(observed, truth, np.nan)
            gaps = ~observed
            point = {
                "field_mean": lambda: baselines.field_mean(hidden, observed),
                "field_mean_anomaly": lambda: baselines.field_mean(hidden, observed, setup.climatology),
                "linear": lambda: baselines.interpolate(hidden, observed, lat, setup.lon, "linear"),
                "cubic": lambda: baselines.interpolate(hidden, observed, lat, setup.lon, "cubic"),
                "linear_anomaly": lambda: baselines.interpolate(
                    hidden, observed, lat, setup.lon, "linear", setup.climatology
                ),
            }
            for name, fn in point.items():
                filled, seconds = _timed(fn)
                record(name, _point_scores(filled, truth, gaps, lat), seconds)
            for name, background in (("kriging", None), ("kriging_anomaly", setup.climatology)):
                (mean, variance), seconds = _timed(
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
            ensemble, seconds = _timed(
                lambda: conditional_fill(
                    models["fill"],
                    st.transform(hidden),
                    setup.static,
                    members=MEMBERS,
                    steps=settings.fill_steps,
                    seed=number,
                )
            )
            ensemble_k = st.inverse_transform(ensemble)
            record("diffusion_conditional", _ensemble_scores(ensemble_k, truth, gaps, lat), seconds)
            hist.setdefault("diffusion_conditional", 0)
            hist["diffusion_conditional"] = hist["diffusion_conditional"] + metrics.rank_histogram(
                ensemble_k, truth, hist_rng, gaps
            )
            if example is None and scenario == "sparse90":
                example = (truth, hidden, ensemble_k)
            if number not in slow:
                continue
            record("diffusion_conditional_subset", _ensemble_scores(ensemble_k, truth, gaps, lat), seconds)
            ensemble, seconds = _timed(
                lambda: inpaint_fill(
                    models["generate"],
                    st.transform(hidden),
                    setup.static,
                    members=MEMBERS,
                    steps=settings.inpaint_steps,
                    sampler="ddpm",
                    resample=settings.inpaint_resample,
                    seed=number,
                )
            )
            record(
                "diffusion_inpaint_subset", _ensemble_scores(st.inverse_transform(ensemble), truth, gaps, lat), seconds
            )
            if peer_fill is not None:
                ensemble, seconds = _timed(lambda: peer_fill(st.transform(hidden), number))
                record(
                    "repaint_peer_subset", _ensemble_scores(st.inverse_transform(ensemble), truth, gaps, lat), seconds
                )
        results[scenario] = {
            "variograms": variograms,
            "methods": {name: _summary(rows[name], times[name]) for name in rows},
        }
        histograms.update({f"{name} {scenario}": counts for name, counts in hist.items()})
    return results, histograms, example


def forecast_benchmark(settings: Settings, setup: Setup, model: GeoModel, deterministic: torch.nn.Module):
    """Ensemble CRPS / RMSE / spread-skill per lead against persistence and the deterministic UNet."""
    from metamap.progress import progress_bar

    st, lat = setup.standardizer, setup.lat
    test = set(int(t) for t in setup.test_times)
    starts = [t for t in sorted(test) if all(t + d in test for d in range(-K + 1, max(FORECAST_LEADS) + 1))]
    rng = np.random.default_rng(3)
    picks = np.sort(rng.choice(starts, size=min(settings.forecast_cases, len(starts)), replace=False))
    rows: dict[str, dict[int, list[dict[str, float]]]] = {}
    times: list[float] = []
    histogram = 0
    for number, start in enumerate(progress_bar(picks, desc="forecast")):
        raw = setup.field.values(slice(int(start) - K + 1, int(start) + max(FORECAST_LEADS) + 1))
        history = st.transform(raw[:K])
        ensembles, seconds = _timed(
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
        unet = st.inverse_transform(
            deterministic_forecast(
                deterministic, history, setup.static, list(FORECAST_LEADS), model.meta["increment_std"]
            )
        )
        for i, lead in enumerate(FORECAST_LEADS):
            truth = raw[K - 1 + lead]
            ensemble_k = st.inverse_transform(ensembles[i])
            scores = {
                "diffusion": _ensemble_scores(ensemble_k, truth, None, lat),
                "persistence": _point_scores(raw[K - 1], truth, None, lat),
                "deterministic_unet": _point_scores(unet[i], truth, None, lat),
            }
            for name, value in scores.items():
                rows.setdefault(name, {}).setdefault(lead, []).append(value)
            if lead == max(FORECAST_LEADS):
                histogram = histogram + metrics.rank_histogram(ensemble_k, truth, rng)
    out = {name: {str(lead): _summary(values) for lead, values in by_lead.items()} for name, by_lead in rows.items()}
    return {"methods": out, "seconds_per_lead_median": statistics.median(times), "n_cases": len(picks)}, histogram


def generation_benchmark(settings: Settings, setup: Setup, model: GeoModel) -> tuple[dict[str, Any], dict, dict]:
    """Samples vs held-out test fields; the training fields give the reference values."""
    st = setup.standardizer
    (samples, seconds) = _timed(
        lambda: np.concatenate(
            [
                st.inverse_transform(generate(model, setup.static, 16, steps=settings.fill_steps, seed=s))
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


def _training_info(model: GeoModel) -> dict[str, Any]:
    return {"steps": model.trained.step, "seconds": model.trained.seconds}


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
        task: _train(field, task, train_times, getattr(settings, f"{task}_budget"), settings, runs)
        for task in ("fill", "generate", "forecast")
    }
    setup = _setup(models["fill"], field, train_times, test_times)
    steps_done = models["forecast"].trained.step

    source = PatchSource(field, setup.standardizer, train_times, (64, 64), n_times=K + 6, seed=0)
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
    peer_fill, peer_info = _peer(settings, field, setup, train_times, runs, models["generate"].network.n_parameters())

    fill, histograms, example = fill_benchmark(settings, setup, models, peer_fill)
    forecast, forecast_hist = forecast_benchmark(settings, setup, models["forecast"], deterministic)
    histograms["diffusion forecast +6 h"] = forecast_hist
    generation, curves, correlations = generation_benchmark(settings, setup, models["generate"])

    headline = _headline(fill, forecast)
    result = {
        "benchmark": "geo",
        "quick": quick,
        "headline": headline,
        "goals": _goals(headline),
        "fill": fill,
        "forecast": forecast,
        "generation": generation,
        "training": {name: _training_info(m) for name, m in models.items()},
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
        spread=("ensemble std", ensemble.std(axis=0)),
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
    _print(result)
    return result


def _headline(fill: dict[str, Any], forecast: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for scenario in SCENARIOS:
        methods = fill[scenario]["methods"]
        reference = min(("kriging", "kriging_anomaly"), key=lambda name: methods[name]["rmse"])
        ours = methods["diffusion_conditional"]
        out[f"rmse_ratio_vs_kriging_{scenario}"] = ours["rmse"] / methods[reference]["rmse"]
        out[f"crps_ratio_vs_kriging_{scenario}"] = ours["crps"] / methods[reference]["crps"]
        out[f"spread_skill_{scenario}"] = ours["spread_skill"]
        out[f"kriging_reference_{scenario}"] = reference
    out["speedup_vs_repaint"], out["speedup_method"] = _speedup(fill)
    for lead in (1, 6):
        diffusion = forecast["methods"]["diffusion"][str(lead)]["crps"]
        persistence = forecast["methods"]["persistence"][str(lead)]["crps"]
        out[f"forecast_crps_ratio_vs_persistence_{lead}h"] = diffusion / persistence
        out[f"forecast_crps_ratio_vs_deterministic_unet_{lead}h"] = (
            diffusion / forecast["methods"]["deterministic_unet"][str(lead)]["crps"]
        )
    return out


def _speedup(fill: dict[str, Any]) -> tuple[float | None, str | None]:
    """Peer seconds / seconds of our fastest 16-member method whose RMSE is <= the peer's, on the same fields.

    Per scenario, on the subset of fields every slow method filled; the
    smaller of the two scenarios' speedups is reported. None when the peer
    did not run or none of ours matched its RMSE.
    """
    speedups, names = [], []
    for scenario in SCENARIOS:
        methods = fill[scenario]["methods"]
        peer = methods.get("repaint_peer_subset")
        if peer is None:
            return None, None
        ours = [
            name
            for name in ("diffusion_conditional_subset", "diffusion_inpaint_subset")
            if methods[name]["rmse"] <= peer["rmse"]
        ]
        if not ours:
            return None, None
        fastest = min(ours, key=lambda name: methods[name]["seconds_median"])
        speedups.append(peer["seconds_median"] / methods[fastest]["seconds_median"])
        names.append(f"{scenario}: {fastest}")
    return min(speedups), "; ".join(names)


def _goals(headline: dict[str, Any]) -> dict[str, bool | None]:
    def below(key: str, limit: float) -> bool | None:
        return None if headline.get(key) is None else bool(headline[key] <= limit)

    return {
        "rmse_sparse90_le_0.8x_kriging": below("rmse_ratio_vs_kriging_sparse90", 0.8),
        "crps_sparse90_le_0.8x_kriging": below("crps_ratio_vs_kriging_sparse90", 0.8),
        "rmse_blobs40_le_0.8x_kriging": below("rmse_ratio_vs_kriging_blobs40", 0.8),
        "crps_blobs40_le_0.8x_kriging": below("crps_ratio_vs_kriging_blobs40", 0.8),
        "spread_skill_sparse90_in_0.9_1.1": None
        if headline.get("spread_skill_sparse90") is None
        else bool(0.9 <= headline["spread_skill_sparse90"] <= 1.1),
        "spread_skill_blobs40_in_0.9_1.1": None
        if headline.get("spread_skill_blobs40") is None
        else bool(0.9 <= headline["spread_skill_blobs40"] <= 1.1),
        "speedup_vs_repaint_ge_5": None
        if headline.get("speedup_vs_repaint") is None
        else bool(headline["speedup_vs_repaint"] >= 5),
        "forecast_crps_1h_below_persistence": below("forecast_crps_ratio_vs_persistence_1h", 1.0 - 1e-12),
        "forecast_crps_6h_below_persistence": below("forecast_crps_ratio_vs_persistence_6h", 1.0 - 1e-12),
    }


def _print(result: dict[str, Any]) -> None:
    for scenario in SCENARIOS:
        methods = result["fill"][scenario]["methods"]
        rows = [
            [name, m["rmse"], m["crps"], m.get("spread_skill", "-"), m["seconds_median"], m["n_fields"]]
            for name, m in methods.items()
        ]
        print(f"\ngap-filling {scenario} (K, missing pixels)")
        print(format_table(["method", "RMSE", "CRPS", "spread/skill", "s/field", "fields"], rows))
    rows = [
        [name, *[by_lead[str(lead)]["crps"] for lead in FORECAST_LEADS]]
        for name, by_lead in result["forecast"]["methods"].items()
    ]
    print("\nforecast CRPS (K)")
    print(format_table(["method", *[f"+{lead} h" for lead in FORECAST_LEADS]], rows))
    print("\nheadline")
    print(format_table(["key", "value"], [[k, v] for k, v in result["headline"].items()]))


NOTES = {
    "split": "train (and standardize) on 2019-03-01..24, test on 03-25..31; no test data used for any choice",
    "training_budget": "each model has a wall-clock cap (settings.*_budget = (max steps, max seconds)); full run: "
    "fill 11 min, generate 7 min, RePaint peer 7 min (the same batches, schedule, lr and "
    "wall time as "
    "'generate', without the latitude/longitude channels: diffusers' UNet2DModel takes none), "
    "forecast 7 min, deterministic UNet <= 4 min and at most the forecast model's steps: "
    "36 min of training in all, on one CPU core shared with other jobs (2 cores, 4 users); "
    "'training' and 'peer' give the steps done",
    "models": "UNet2d base 16 (168k parameters; base 32 trained too few steps in the wall budget on the shared "
    "CPU), mults (1, 2, 2), GroupNorm; cosine schedule, 1000 steps, v-prediction, Adam 5e-4, "
    "EMA 0.995, batch 16 whole fields (33 x 49); conditioning: fill = observed mask, observed values "
    "(0 where missing), normalized latitude and longitude; forecast = previous 3 fields, lead/6, "
    "latitude, longitude (one model for all leads); generate = latitude and longitude only. The ERA5 "
    "file has no land-sea mask, so none is used.",
    "fill_metrics": "on the missing pixels, cos-latitude weighted, mean over test fields (95% CI in *_ci95); "
    "ensembles: RMSE of the ensemble mean, fair CRPS, spread/skill with the (M+1)/M correction; "
    "deterministic baselines: CRPS = MAE; kriging: closed-form Gaussian CRPS from its predictive "
    "variance",
    "kriging": "PyKrige OrdinaryKriging on an equirectangular plane; variogram model (exponential | spherical | "
    "gaussian) chosen per scenario by RMSE on training fields, its parameters fitted per field; "
    "'kriging' on the raw field, 'kriging_anomaly' on the anomaly from the per-pixel training mean; "
    "the headline ratios use the better (lower RMSE) of the two",
    "speedup_vs_repaint": "median wall seconds per field of the RePaint peer's 16-member ensemble divided by that "
    "of our fastest 16-member method (conditional or training-free inpainting) whose "
    "ensemble-mean RMSE on the same subset of fields is <= the peer's; the smaller of the "
    "two scenarios; null if the peer did not run or no method of ours matched its RMSE",
    "sampling": "conditional fill, forecast and generation: DPM-Solver++(2M) 20 steps; training-free inpainting: "
    "DDPM 25 steps x 4 RePaint resamplings (100 network evaluations); RePaint peer: RePaintScheduler "
    "with 50 steps, jump_length 10, jump_n_sample 4 (about 200 evaluations; the RePaint pipeline's "
    "default 250 / 10 / 10 would cost about 2500, too slow here); the slow methods (inpainting, peer) "
    "fill 4 of the test fields of each scenario, evenly spread over the 24 in time order, and the "
    "conditional model is scored on the same 4 ('*_subset') for the side-by-side comparison",
    "forecast": "one diffusion model for leads 1..6 h (lead as a conditioning channel); 16 members; scores over "
    "the whole grid; persistence and the deterministic UNet are scored with CRPS = MAE",
    "generation": "64 samples vs all 168 test fields; 'training_fields' is the same statistic for 64 random "
    "training fields, the level a perfect model of the training period would reach",
}
