"""Benchmark ``traffic``: few-shot forecasting of new sensors (P1) and a new city (P2).

- P1 (``metr-la-week.h5``, 207 LA sensors, 7 days): sensors split 70/30 by
  seed; meta-train on the 70% over days 1-5; each target sensor adapts on
  its own day 5 (``day``) or on 06:00-12:00 of it (``6h``); tested on days 6-7.
- P2: meta-train on LA (7 days); adapt to every PEMS04 detector's speed from
  its first day (288 steps); test on the rest (406 steps: the file holds 2.4
  days).
- ``p1_15min`` / ``p2_15min``: the same protocols with both files averaged to
  15-minute steps (1 h of history, horizons 15 / 30 / 60 min = 1 / 2 / 4
  steps, a support day of 96 steps), so every method meets a coarser step.
- ``p1_flow``: P1 on PEMS04's flow channel (307 detectors, vehicles per
  5 minutes, forecasts never negative), shortened to the 2.4 days the file
  holds: meta-train on the 70% over day 1, each target detector adapts on
  18:00-24:00 of day 1 (``6h``) and is tested on the 1.4 days after. The
  networks go without the seasonal inputs there: day 1 holds no earlier day.

Every method of :mod:`metamap.traffic.experiment` with both models (per-node
MLP and the graph-aware diffusion model), over 3 seeds (the seed sets the
sensor split, the initialisation and the task draws). Errors are masked MAE /
RMSE / MAPE (mph; vehicles per 5 minutes for flow) at 15 / 30 / 60 min; the table gives the mean over seeds
and the spread (standard deviation across seeds). Runs are kept under
``<json stem>_runs/`` with their results, so a stopped benchmark resumes.

The networks see the readings one day and one week before each target and
correct the base forecast chosen on the validation sensors (see
:mod:`metamap.traffic.features`). The goal: the best meta-learned method at
or below the best baseline at every horizon, at least 10% below the best
baseline in MAE at 60 min, and at least 20% below persistence. The JSON says
whether it was met, with the numbers.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from metamap.arguments import duration_label
from metamap.bench.cache import load_cached, runs_folder, save_cached
from metamap.paths import shared_data_dir
from metamap.report import format_table, machine, write_json
from metamap.traffic import plots
from metamap.traffic.data import TrafficData
from metamap.traffic.experiment import (
    BASELINES,
    META_METHODS,
    MODELS,
    SIMPLE_BASELINES,
    ExperimentConfig,
    compare,
    train_methods,
)
from metamap.traffic.features import Windows
from metamap.traffic.io import load_traffic
from metamap.traffic.protocols import new_city, new_sensors

SEEDS = (0, 1, 2)
FULL = ExperimentConfig(steps=600)
# quick: one meta-learner, the baselines with nothing to train, and fine-tuning
# (no target-only training: it tries 8 settings of up to 1000 steps)
QUICK = ExperimentConfig(
    steps=5,
    hidden=(16,),
    meta_batch=4,
    n_support=8,
    n_query=8,
    methods=("maml", *SIMPLE_BASELINES, "pretrain_finetune"),
)
PLOTTED = ("maml", "pretrain_finetune", "historical_average", "persistence")
# minutes between readings per protocol: both files hold 5-minute readings, averaged to 15 for the *_15min ones
STEP_MINUTES = {"p1": 5, "p2": 5, "p1_15min": 15, "p2_15min": 15, "p1_flow": 5}
UNITS = {"p1_flow": "vehicles / 5 min"}  # the others forecast speeds, in mph
FLOW = "p1_flow"
FLOW_SUPPORT_MINUTES = 6 * 60  # one training day holds the targets' 6 h, the validation sensors' 6 h and 12 h to score
HISTORY_MINUTES, HORIZON_MINUTES = 60, (15, 30, 60)
HORIZONS = tuple(duration_label(m) for m in HORIZON_MINUTES)
LONGEST = HORIZONS[-1]


def load_la(step_minutes: int = 5) -> TrafficData:
    folder = shared_data_dir() / "traffic"
    la = load_traffic(folder / "metr-la-week.h5", folder / "adj_mx_la.pkl", folder / "graph_sensor_locations_la.csv")
    return la if step_minutes == la.step_minutes else la.resampled(step_minutes)


def load_pems04(step_minutes: int = 5, channel: str = "speed") -> TrafficData:
    folder = shared_data_dir() / "traffic"
    pems = load_traffic(folder / "PEMS04.npz", folder / "PEMS04.csv", channel=channel, step_minutes=5)
    return pems if step_minutes == pems.step_minutes else pems.resampled(step_minutes)


def protocol_config(protocol: str, quick: bool, model: str, seed: int) -> ExperimentConfig:
    """The experiment of one job: windows and support day in the protocol's steps."""
    minutes = STEP_MINUTES[protocol]
    windows = Windows.from_minutes(minutes, HISTORY_MINUTES, HORIZON_MINUTES)
    return replace(
        QUICK if quick else FULL,
        model=model,
        seed=seed,
        history=windows.history,
        horizons=windows.horizons,
        support_steps=(FLOW_SUPPORT_MINUTES if protocol == FLOW else 24 * 60) // minutes,
        nonnegative=protocol == FLOW,
        seasonal=protocol != FLOW,  # one training day holds no reading a day earlier to learn them from
    )


def run_job(protocol: str, model: str, seed: int, quick: bool, runs_dir: Path) -> dict[str, Any]:
    """Train and compare every method for one (protocol, model, seed); reuses a finished result."""
    config = protocol_config(protocol, quick, model, seed)
    folder = runs_dir / f"{protocol}_{model}_seed{seed}"
    saved = folder / "result.json"
    settings = {"protocol": protocol, **asdict(config)}
    previous = load_cached(saved, settings)
    if previous is not None:
        return previous
    minutes = STEP_MINUTES[protocol]
    if protocol == FLOW:
        setup = new_sensors(load_pems04(minutes, "flow"), config, train_days=1)
    elif protocol.startswith("p1"):
        setup = new_sensors(load_la(minutes), config)
    else:
        setup = new_city(load_la(minutes), load_pems04(minutes), config)
    config = setup.config
    trained = train_methods(setup.family, config)
    results = compare(trained, setup.targets, setup.validations, config)
    if seed == SEEDS[0] and model == "graph":
        main = next(iter(setup.targets))
        shown = {m: results[main][m].prediction for m in PLOTTED if m in results[main]}
        plots.target_forecasts(setup.targets[main], shown, torch.arange(3), folder / "forecasts.png")
    return save_cached(
        saved, settings, {"targets": {name: {m: r.summary() for m, r in res.items()} for name, res in results.items()}}
    )


def _one_thread() -> None:
    torch.set_num_threads(1)


def _aggregate(jobs: dict[tuple, dict]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{protocol/target: {model/method: {mae60_mean, mae60_std, ...}}}`` over seeds."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for (protocol, model, seed), outcome in jobs.items():
        for target, methods in outcome["targets"].items():
            for method, summary in methods.items():
                cell = table.setdefault(f"{protocol}/{target}", {}).setdefault(f"{model}/{method}", {"runs": []})
                cell["runs"].append(summary)
    for cells in table.values():
        for cell in cells.values():
            runs = cell.pop("runs")
            cell["adapt_seconds"] = statistics.median(r["adapt_seconds"] for r in runs)
            cell["train_seconds"] = statistics.median(r["train_seconds"] for r in runs)
            cell["n_seeds"] = len(runs)
            cell["fallbacks"] = [r.get("fallbacks", 0) for r in runs]  # per seed: targets forecast unadapted
            # A method whose forecasts went non-finite on some seed is reported as diverged, not averaged.
            diverged = sum(r["errors"][LONGEST]["mae"] is None for r in runs)
            if diverged:
                cell["diverged_seeds"] = diverged
                continue
            for horizon in runs[0]["errors"]:
                for metric in ("mae", "rmse", "mape"):
                    values = [r["errors"][horizon][metric] for r in runs]
                    if None in values:  # MAPE where readings of 0 make it meaningless
                        continue
                    cell[f"{metric}_{horizon}_mean"] = statistics.fmean(values)
                    cell[f"{metric}_{horizon}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
            cell["mae_by_step"] = [statistics.fmean(s) for s in zip(*(r["mae_by_step"] for r in runs))]
    return table


def _best(cells: dict[str, dict[str, Any]], methods: tuple[str, ...], horizon: str = LONGEST) -> tuple[str, float]:
    candidates = {
        k: v[f"mae_{horizon}_mean"]
        for k, v in cells.items()
        if k.split("/")[1] in methods and "diverged_seeds" not in v
    }
    name = min(candidates, key=candidates.get)
    return name, candidates[name]


def _worst_ratio(cells: dict[str, dict[str, Any]]) -> float:
    """The best meta-learner's MAE over the best baseline's, at the horizon where that ratio is highest."""
    return max(_best(cells, META_METHODS, h)[1] / _best(cells, BASELINES, h)[1] for h in HORIZONS)


def _headline(table: dict) -> dict[str, Any]:
    headline: dict[str, Any] = {}
    for prefix in STEP_MINUTES:
        key = next(k for k in table if k.startswith(f"{prefix}/"))  # the support day (P1), the city (P2)
        cells = table[key]
        meta_name, meta = _best(cells, META_METHODS)
        base_name, base = _best(cells, BASELINES)
        persistence = cells["graph/persistence"][f"mae_{LONGEST}_mean"]
        headline.update(
            {
                f"{prefix}_best_meta_mae60": meta,
                f"{prefix}_best_meta": meta_name,
                f"{prefix}_best_baseline_mae60": base,
                f"{prefix}_best_baseline": base_name,
                f"{prefix}_persistence_mae60": persistence,
                f"{prefix}_meta_vs_best_baseline": meta / base - 1.0,
                f"{prefix}_meta_vs_persistence": meta / persistence - 1.0,
                f"{prefix}_best_meta_over_best_baseline_all_horizons": _worst_ratio(cells),
                f"{prefix}_goal_met": bool(
                    meta <= 0.9 * base and meta <= 0.8 * persistence and _worst_ratio(cells) <= 1.0
                ),
                f"{prefix}_adapt_seconds_best_meta": cells[meta_name]["adapt_seconds"],
                f"{prefix}_adapt_seconds_target_only": cells.get(f"{meta_name.split('/')[0]}/target_only", {}).get(
                    "adapt_seconds"
                ),
            }
        )
    headline["worst_ratio_over_tables"] = max(_worst_ratio(cells) for cells in table.values())
    return headline


def run(quick: bool, json_path: Path) -> dict[str, Any]:
    """Every (protocol, model, seed) job, two at a time on 2+ cores; table, JSON and plots."""
    runs_dir = runs_folder(json_path, quick)
    seeds = SEEDS[:1] if quick else SEEDS
    keys = [(p, m, s) for s in seeds for p in STEP_MINUTES for m in MODELS]  # every setting's first seed first
    workers = min(2, os.cpu_count() or 1)
    if workers == 1:
        jobs = {k: run_job(*k, quick, runs_dir) for k in keys}
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread) as pool:
            futures = {k: pool.submit(run_job, *k, quick, runs_dir) for k in keys}
            jobs = {k: f.result() for k, f in futures.items()}
    table = _aggregate(jobs)
    headline = _headline(table)
    for key, cells in table.items():
        scored = {name: c for name, c in cells.items() if "diverged_seeds" not in c}
        rows = [
            [
                name,
                *(f"{c[f'mae_{h}_mean']:.3f} ± {c[f'mae_{h}_std']:.3f}" for h in HORIZONS),
                f"{c[f'rmse_{LONGEST}_mean']:.3f}",
                f"{c[f'mape_{LONGEST}_mean']:.2f}" if f"mape_{LONGEST}_mean" in c else "",
                f"{c['adapt_seconds']:.2f}",
            ]
            for name, c in sorted(scored.items(), key=lambda kv: kv[1][f"mae_{LONGEST}_mean"])
        ]
        rows += [
            [name, f"diverged on {c['diverged_seeds']} of {c['n_seeds']} seed(s)", "", "", "", "", ""]
            for name, c in cells.items()
            if name not in scored
        ]
        protocol = key.split("/")[0]
        units = UNITS.get(protocol, "mph")
        print(f"\n{key}: masked MAE ({units}), mean ± std over {len(seeds)} seed(s)")
        header = ["model/method", *(f"MAE {h}" for h in HORIZONS), f"RMSE {LONGEST}", f"MAPE {LONGEST} %", "adapt s"]
        print(format_table(header, rows))
        plots.error_by_horizon(
            {name: c["mae_by_step"] for name, c in scored.items() if name.startswith("graph/")},
            json_path.with_name(f"{json_path.stem}_{key.replace('/', '_')}.png"),
            title=f"{key} (graph model)",
            step_minutes=STEP_MINUTES[protocol],
            units=units,
        )
    print("\n" + "\n".join(f"{k}: {v}" for k, v in headline.items()))
    result = {
        "benchmark": "traffic",
        "quick": quick,
        "headline": headline,
        "table": table,
        "seeds": list(seeds),
        "config": asdict(QUICK if quick else FULL),
        "machine": machine(),
        "notes": __doc__,
    }
    write_json(json_path, result)
    return result
