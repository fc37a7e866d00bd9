"""Benchmark ``physics``: few-shot trajectory prediction and parameter identification.

Four parametric systems (:mod:`metamap.physics.systems`); K = 10 noisy
(std 0.05), irregular observations of a new system; protocol in
:mod:`metamap.physics.experiment`. Headline: the geometric mean over the
systems of MSE(meta-learner chosen on meta-val) / MSE(pretrain + fine-tune),
and that learner's parameter relative error (probe head) averaged over the
systems, beside least squares. ``chosen_at_grid_edge`` names, per system and
method, the tuned keys whose value chosen on meta-val is the smallest or
largest of its grid (``systems.<name>.tuning_on_val`` holds the grids).
Hybrids that stand on the known equation: ``physics_param_err_ratio_vs_lsq``
(probe-head proposal refined by one least-squares fit, against multi-start
least squares, with both function-evaluation counts) and
``physics_misspecified_mse_ratio_vs_lsq`` (:mod:`metamap.physics.residual`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from metamap.experiment import ResultTable
from metamap.physics.experiment import GRIDS, WIDE_GRIDS, run_system
from metamap.physics.plots import trajectory_figure
from metamap.physics.residual import run_misspecified
from metamap.physics.systems import SYSTEMS
from metamap.report import machine, write_json

K_SHOT = 10
QUICK_SYSTEMS = ("oscillator", "heat")  # an ODE and the PDE: every code path, half the time


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def _geometric_mean(values) -> float:
    return math.exp(_mean(math.log(v) for v in values))


def run(quick: bool, json_path: Path) -> dict[str, Any]:
    started = time.perf_counter()
    settings = (
        {"steps": 10, "test_tasks": 3, "val_tasks": 3, "head_tasks": 20, "n_systems": 20, "ls_starts": 1}
        if quick
        else {"steps": 600, "test_tasks": 40, "val_tasks": 30, "head_tasks": 400, "n_systems": 500, "ls_starts": 3}
    )
    grids = GRIDS if quick else WIDE_GRIDS  # the quick run checks the plumbing, not the tuning
    results = {}
    systems = {n: SYSTEMS[n] for n in QUICK_SYSTEMS} if quick else SYSTEMS
    for name, system in systems.items():
        print(f"[physics] {name}")
        results[name] = run_system(system, k_shot=K_SHOT, grids=grids, **settings)
    print("[physics] misspecified: pendulum data, small-angle equation")
    misspecified = run_misspecified(
        k_shot=K_SHOT,
        steps=settings["steps"],
        train_tasks=settings["n_systems"],
        val_tasks=settings["val_tasks"],
        test_tasks=settings["test_tasks"],
        ls_starts=settings["ls_starts"],
        grids=grids,
    )
    ratios = {
        n: r["mse"][r["best_meta_learner_on_val"]]["mean"] / r["mse"]["pretrain_finetune"]["mean"]
        for n, r in results.items()
    }
    ls_ratios = {
        n: r["mse"]["least_squares"]["mean"] / r["mse"]["pretrain_finetune"]["mean"] for n, r in results.items()
    }
    param_ratios = {
        n: r["param_rel_error"]["hybrid"]["mean"] / r["param_rel_error"]["least_squares"]["mean"]
        for n, r in results.items()
    }
    evaluations = {
        method: _mean(r["function_evaluations"][method]["mean"] for r in results.values())
        for method in ("hybrid", "least_squares")
    }
    headline = {
        "physics_mse_ratio_vs_finetune_k10": _geometric_mean(ratios.values()),
        "physics_param_err_ratio_vs_lsq": _geometric_mean(param_ratios.values()),
        "physics_function_evaluations_hybrid": evaluations["hybrid"],
        "physics_function_evaluations_lsq": evaluations["least_squares"],
        "physics_misspecified_mse_ratio_vs_lsq": misspecified["mse_ratio_vs_misspecified_least_squares"],
        "physics_param_rel_error_k10": _mean(
            r["param_rel_error"][r["best_meta_learner_on_val"]]["mean"] for r in results.values()
        ),
        "physics_mse_ratio_least_squares_vs_finetune_k10": _geometric_mean(ls_ratios.values()),
        "physics_param_rel_error_k10_least_squares": _mean(
            r["param_rel_error"]["least_squares"]["mean"] for r in results.values()
        ),
    }
    result = {
        "benchmark": "physics",
        "quick": quick,
        "headline": headline,
        "headline_notes": f"MSE ratio: geometric mean over the {len(systems)} systems of mean dense-grid MSE of the "
        "meta-learner chosen on meta-val (MAML or Meta-SGD) / that of pretrain + fine-tune; parameter "
        "error: mean over systems of the mean per-task relative error (that meta-learner + probe head); "
        "the least-squares figures beside them; param_err_ratio_vs_lsq: geometric mean over the systems of "
        "the hybrid's (probe-head proposal + one least-squares fit) mean relative parameter error / that of "
        f"multi-start least squares ({settings['ls_starts']} starts); function evaluations: mean per task "
        "(simulations of the equation, finite-difference Jacobians included), averaged over the systems; "
        "misspecified_mse_ratio_vs_lsq: pendulum data fitted with the small-angle equation, mean dense MSE of "
        "fit + meta-learned residual network / that of the fit alone",
        "mse_ratio_by_system": ratios,
        "param_err_ratio_vs_lsq_by_system": param_ratios,
        "least_squares_mse_ratio_by_system": ls_ratios,
        "settings": {
            **settings,
            "k_shot": K_SHOT,
            "noise_std": 0.05,
            "model": "MLP n_in-64-64-n_out ReLU",
            "inner": "5 SGD steps while meta-training (lr 0.05, lowered on divergence: see inner_lr)",
            "meta_batch": 16,
            "outer": "adam 1e-3, gradient norm clipped at 1",
        },
        "training_budget": f"{settings['steps']} meta-steps per learner and system, one CPU core",
        "chosen_at_grid_edge": {
            n: {method: t["at_edge"] for method, t in r["tuning_on_val"].items() if t["at_edge"]}
            for n, r in results.items()
        },
        "systems": {n: {k: v for k, v in r.items() if k != "examples"} for n, r in results.items()},
        "misspecified": misspecified,
        "seconds": time.perf_counter() - started,
        "machine": machine(),
    }
    write_json(json_path, result)
    table = ResultTable(("MSE", "param rel. error"), setting_name="system")
    for name, r in results.items():
        for method, mse in r["mse"].items():
            error = r["param_rel_error"].get(method)
            values = {"MSE": mse["mean"], **({"param rel. error": error["mean"]} if error else {})}
            intervals = {"MSE": mse["ci95"], **({"param rel. error": error["ci95"]} if error else {})}
            table.add(method, values, setting=name, ci95=intervals)
    print(table.to_text())
    print({k: v["mean"] for k, v in misspecified["mse"].items()})
    print(headline)
    print(f"chosen at a grid edge (system: method: keys): {result['chosen_at_grid_edge']}")
    trajectory_figure(results, json_path.with_suffix(".png"))
    print(f"wrote {json_path} and {json_path.with_suffix('.png')}")
    return result
