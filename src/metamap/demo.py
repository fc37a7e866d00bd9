"""``metamap demo``: few-shot sine regression in under two minutes on 2 cores.

Meta-trains MAML (second order) and the "pretrain on all tasks" baseline on
the sinusoid family, then adapts each, and a network fitted from scratch, to
600 unseen test tasks from 5 points; prints the table with 95% intervals and
saves a plot of the adapted curves. A short version of ``metamap bench
sinusoid`` (fewer meta-steps).
"""

from __future__ import annotations

from pathlib import Path

import torch

from metamap.bench import sinusoid as study
from metamap.recipes import build_learner
from metamap.report import format_table, write_json

DEMO_STEPS = 6000
QUICK_STEPS = 100


def run_demo(out: Path, quick: bool = False) -> dict:
    """Run the demo into folder ``out``; returns the scores by method and inner steps."""
    # The 1-40-40-1 model's matrices are too small to split over threads; extra
    # intra-op threads only contend (badly so on a busy machine).
    torch.set_num_threads(1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    steps = QUICK_STEPS if quick else DEMO_STEPS
    n_tasks = 100 if quick else study.TEST_TASKS
    learners = {}
    seconds = {}
    for name in ("maml", "pretrain"):
        print(f"meta-training {name} on sine tasks for {steps} steps")
        learners[name], seconds[name] = study.train(name, steps, out / "runs" / name)
    learners["scratch"] = build_learner(study.run_config("pretrain", seed=1))  # untrained: fit from scratch
    scores = {name: study.score(learner, n_tasks) for name, learner in learners.items()}
    print()
    print(f"5-shot sine regression: query MSE on {n_tasks} unseen tasks (mean ± 95% CI)")
    print(format_table(["method", "1 step", "5 steps", "10 steps", "paper (70k steps)"], study.table_rows(scores)))
    plot = out / "adapted_curves.png"
    study.plot_adapted_curves(learners, plot)
    write_json(out / "demo.json", {"meta_steps": steps, "train_seconds": seconds,
                                   "mse": {n: {str(k): v for k, v in s.items()} for n, s in scores.items()}})
    print(f"\nplot of adapted curves: {plot}\nresults: {out / 'demo.json'}")
    return scores
