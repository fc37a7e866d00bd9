"""Benchmark ``augment``: does generative task augmentation help few-shot error with few real tasks?

Physics (:mod:`metamap.physics.augmentation`): the 4 systems of bench physics,
K = 10, noise 0.05, only 50 real meta-train systems; a latent diffusion
model (and, for comparison, a Gaussian in the same PCA space) fitted on
their trajectories draws 500 synthetic systems, which make half of every
meta-batch. MAML and pretrain + fine-tune, with and without, same meta-steps
and seed; test dense MSE on the same test tasks. A reference condition
trains on 500 *real* systems (what more real data would give).

Traffic P1 (:mod:`metamap.traffic.augmentation`): per-node model, 20 real source
sensors, 500 synthetic sensors (5-day scaled series) from the same kinds of
generator; MAE at 60 min on the target sensors with and without.

Headline ``augment_mse_ratio``: mean over seeds of the geometric mean over
the 4 systems of MSE(MAML with diffusion augmentation) / MSE(MAML without);
goal <= 0.95.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from metamap.bench.augment_plots import ablation_figure
from metamap.bench.traffic import load_la
from metamap.errors import DataError
from metamap.physics.augmentation import METHODS as PHYSICS_METHODS
from metamap.physics.augmentation import run_ablation as physics_ablation
from metamap.physics.systems import SYSTEMS
from metamap.report import format_table, machine, mean_ci95, write_json
from metamap.traffic.augmentation import run_ablation as traffic_ablation

GENERATORS = ("diffusion", "gaussian")
GOAL = 0.95
FULL = {
    "seeds": (0, 1, 2, 3, 4),
    "physics": {
        "steps": 600,
        "n_real": 50,
        "n_synthetic": 500,
        "synthetic_fraction": 0.5,
        "val_tasks": 30,
        "test_tasks": 40,
        "reference_n_real": 500,
    },
    "traffic_seeds": (0, 1, 2),
    "traffic": {"steps": 600, "n_real": 20, "n_synthetic": 500, "synthetic_fraction": 0.5},
}
QUICK_DIFFUSION = {"diffusion": {"train_steps": 20}}
QUICK = {
    "seeds": (0,),
    "physics": {
        "steps": 5,
        "n_real": 20,
        "n_synthetic": 20,
        "synthetic_fraction": 0.5,
        "val_tasks": 3,
        "test_tasks": 3,
        "reference_n_real": None,
        "generator_options": QUICK_DIFFUSION,
    },
    "traffic_seeds": (0,),
    "traffic": {
        "steps": 5,
        "n_real": 20,
        "n_synthetic": 20,
        "synthetic_fraction": 0.5,
        "generator_options": QUICK_DIFFUSION,
    },
}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _geometric_mean(values) -> float:
    values = list(values)
    return math.exp(_mean([math.log(v) for v in values]))


def _ci(values: list[float]) -> list[float]:
    """``[mean, 95% half-width]`` over seeds (half-width NaN for one seed)."""
    return list(mean_ci95(values))


def physics_summary(runs: dict[int, dict[str, dict]]) -> dict[str, Any]:
    """Ratios over seeds from ``runs[seed][system]`` (each a :func:`physics_ablation` result)."""
    seeds = list(runs)
    systems = list(runs[seeds[0]])
    conditions = [c for c in runs[seeds[0]][systems[0]]["mse"] if c != "none"]
    mean_mse = {
        s: {
            c: {m: [_mean(runs[seed][s]["mse"][c][m]) for seed in seeds] for m in PHYSICS_METHODS}
            for c in ("none", *conditions)
        }
        for s in systems
    }
    ratio = {
        s: {
            c: {m: [w / wo for w, wo in zip(mean_mse[s][c][m], mean_mse[s]["none"][m])] for m in PHYSICS_METHODS}
            for c in conditions
        }
        for s in systems
    }
    by_seed = {
        c: {
            m: [_geometric_mean(ratio[s][c][m][i] for s in systems) for i in range(len(seeds))] for m in PHYSICS_METHODS
        }
        for c in conditions
    }
    return {
        "ratio_geomean_over_systems": {c: {m: _ci(v) for m, v in ms.items()} for c, ms in by_seed.items()},
        "ratio_geomean_over_systems_by_seed": by_seed,
        "ratio_by_system": {
            s: {c: {m: _ci(v) for m, v in ms.items()} for c, ms in cs.items()} for s, cs in ratio.items()
        },
        "ratio_by_system_by_seed": ratio,
        "mse_by_system": {
            s: {c: {m: _ci(v) for m, v in ms.items()} for c, ms in cs.items()} for s, cs in mean_mse.items()
        },
        "mse_by_system_by_seed": mean_mse,
    }


def traffic_summary(runs: dict[int, dict]) -> dict[str, Any]:
    """MAE at 60 min over seeds per condition and method, and the ratios with / without."""
    seeds = list(runs)
    conditions = list(runs[seeds[0]]["errors"])
    methods = list(runs[seeds[0]]["errors"]["none"])
    mae = {c: {m: [runs[s]["errors"][c][m]["1h"]["mae"] for s in seeds] for m in methods} for c in conditions}
    ratio = {
        c: {m: [w / wo for w, wo in zip(mae[c][m], mae["none"][m])] for m in ("maml", "pretrain_finetune")}
        for c in conditions
        if c != "none"
    }
    return {
        "mae60": {c: {m: _ci(v) for m, v in ms.items()} for c, ms in mae.items()},
        "mae60_by_seed": mae,
        "ratio_mae60": {c: {m: _ci(v) for m, v in ms.items()} for c, ms in ratio.items()},
        "ratio_mae60_by_seed": ratio,
    }


def run(quick: bool, json_path: Path) -> dict[str, Any]:
    started = time.perf_counter()
    settings = QUICK if quick else FULL
    physics: dict[int, dict[str, dict]] = {}
    for seed in settings["seeds"]:
        physics[seed] = {}
        for name, system in SYSTEMS.items():
            print(f"[augment] physics {name} seed {seed} ({time.perf_counter() - started:.0f} s)", flush=True)
            physics[seed][name] = physics_ablation(system, seed=seed, generators=GENERATORS, **settings["physics"])
    summary = physics_summary(physics)
    traffic: dict[int, dict] | None = {}
    try:
        data = load_la()
    except DataError as exc:  # the shared data folder is absent: physics only
        print(f"[augment] traffic skipped: {exc}")
        traffic, data = None, None
    for seed in settings["traffic_seeds"] if data is not None else ():
        print(f"[augment] traffic P1 seed {seed} ({time.perf_counter() - started:.0f} s)", flush=True)
        traffic[seed] = traffic_ablation(data, seed=seed, generators=GENERATORS, **settings["traffic"])
    traffic_result = traffic_summary(traffic) if traffic else None
    main = summary["ratio_geomean_over_systems"]
    headline = {
        "augment_mse_ratio": main["diffusion"]["maml"][0],
        "augment_mse_ratio_ci95": main["diffusion"]["maml"][1],
        "augment_goal_met": bool(main["diffusion"]["maml"][0] <= GOAL),
        "augment_mse_ratio_gaussian": main["gaussian"]["maml"][0],
        "augment_mse_ratio_pretrain_finetune": main["diffusion"]["pretrain_finetune"][0],
        "augment_mse_ratio_pretrain_finetune_gaussian": main["gaussian"]["pretrain_finetune"][0],
        **{f"augment_mse_ratio_{c}_maml": v["maml"][0] for c, v in main.items() if c.startswith("real_")},
    }
    if traffic_result:
        headline.update(
            {
                "augment_traffic_p1_mae60_ratio_maml": traffic_result["ratio_mae60"]["diffusion"]["maml"][0],
                "augment_traffic_p1_mae60_ratio_pretrain_finetune": traffic_result["ratio_mae60"]["diffusion"][
                    "pretrain_finetune"
                ][0],
            }
        )
    result = {
        "benchmark": "augment",
        "quick": quick,
        "headline": headline,
        "headline_notes": "augment_mse_ratio: mean over seeds of the geometric mean over the 4 physics systems of "
        "MSE(MAML trained with half of every meta-batch from 500 latent-diffusion systems) / "
        "MSE(MAML without), 50 real meta-train systems, K = 10; goal <= 0.95. The other ratios: "
        "the Gaussian generator, pretrain + fine-tune, and training on 500 real systems instead",
        "notes": __doc__,
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()},
        "physics": summary,
        "physics_runs": {
            seed: {s: {k: v for k, v in r.items() if k != "examples"} for s, r in runs.items()}
            for seed, runs in physics.items()
        },
        "traffic_p1": traffic_result,
        "traffic_runs": {seed: {k: v for k, v in r.items() if k != "examples"} for seed, r in (traffic or {}).items()},
        "seconds": time.perf_counter() - started,
        "machine": machine(),
    }
    write_json(json_path, result)
    _print_tables(summary, traffic_result)
    print(headline)
    first = settings["seeds"][0]
    ratios = {s: summary["ratio_by_system"][s] for s in SYSTEMS}
    examples = {s: physics[first][s]["examples"] for s in SYSTEMS}
    if traffic:
        ratios["traffic_p1"] = {c: {m: v for m, v in ms.items()} for c, ms in traffic_result["ratio_mae60"].items()}
        examples["traffic_p1"] = traffic[settings["traffic_seeds"][0]]["examples"]
    ablation_figure(ratios, examples, json_path.with_suffix(".png"))
    print(f"wrote {json_path} and {json_path.with_suffix('.png')}")
    return result


def _print_tables(summary: dict[str, Any], traffic: dict[str, Any] | None) -> None:
    rows = []
    for system, conditions in summary["mse_by_system"].items():
        for method in PHYSICS_METHODS:
            rows.append([system, method, *(f"{v[method][0]:.4g}" for v in conditions.values())])
    print(format_table(["system", "method", *next(iter(summary["mse_by_system"].values()))], rows))
    if traffic:
        rows = [[m, *(f"{traffic['mae60'][c][m][0]:.3f}" for c in traffic["mae60"])] for m in traffic["mae60"]["none"]]
        print(format_table(["traffic P1 MAE60 (mph)", *traffic["mae60"]], rows))
