"""Benchmark ``omniglot``: Prototypical Networks and MAML with Conv4 on 28x28 Omniglot.

Protocols, and where ours differ because this runs on 2 CPU cores:

- ProtoNets (Snell et al. 2017, Table 1): trained with 60-way episodes and 5
  query examples per class, one model per shot (1 and 5), evaluated 5-way and
  20-way with 15 queries per class. The paper reports 98.8 / 99.7 (5-way
  1/5-shot) and 96.0 / 98.9 (20-way). The paper trains for many more
  episodes (with Adam, lr 1e-3 halved every 2000 episodes); we stop at a
  stated wall-clock budget.
- MAML (Finn et al. 2017, Table 1): second order, one inner step (5-way)
  and five (20-way) of size 0.1 during training. The paper's 0.4 for 5-way
  made training collapse to the uniform predictor (loss ln 5 for 80 steps) in
  this set-up (GroupNorm, PyTorch's default initialisation), while 0.1
  learned; the choice was made on training loss alone. The paper reports
  98.7 (5w1s) and 95.8 (20w1s) after 60,000 meta-iterations of 32 (5-way) /
  16 (20-way) tasks; here meta-batches of 8 tasks with 5 query examples per
  class, and a wall-clock budget: a second-order meta-step of 8 such tasks
  takes about 1.1 s on one core (the recorded run), and the paper's 32 tasks
  with 15 queries hold 12x the images.
  Evaluated with 3 inner steps (5-way) and 5 (20-way), fixed before looking
  at test results.

The split is 1100 train / 100 validation / 423 test characters, each rotated
by 0/90/180/270 degrees (see :func:`metamap.tasks.omniglot_family`).
Accuracy is the mean over 600 test episodes with its 95% interval.
Runs are checkpointed under ``<json stem>_runs/<run>/`` with their test
results (``result.json``); a benchmark started again resumes unfinished runs
and reuses finished ones, so an interruption loses nothing. With two or more
cores two runs train at a time, one thread each; the budgets are wall-clock
minutes of one core.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from metamap.bench.cache import load_cached, runs_folder, save_cached
from metamap.learners import AdaptOptions
from metamap.paths import shared_data_dir
from metamap.plotting import pyplot, save_png
from metamap.recipes import build_family, build_learner
from metamap.report import format_table, machine, write_json
from metamap.training import TrainConfig, evaluate_learner, meta_train
from metamap.training.distributed import pick_device
from metamap.training.metrics_log import read_records

TEST_EPISODES = 600
QUICK_MINUTES, QUICK_TEST_EPISODES = 0.05, 5
TEST_QUERY = 15
TEST_SEED = 1234


@dataclass(frozen=True)
class Run:
    """One trained model: how it is trained, and the (way, shot, adapt steps) it is tested on."""

    name: str
    learner: dict[str, Any]
    train_way: int
    shot: int
    train_query: int
    meta_batch: int
    minutes: float
    lr: float = 1e-3
    tests: tuple[tuple[int, int, int | None], ...] = field(default_factory=tuple)


RUNS = (
    Run("protonet_1shot", {"name": "protonet"}, 60, 1, 5, 1, 20.0, tests=((5, 1, None), (20, 1, None))),
    Run("protonet_5shot", {"name": "protonet"}, 60, 5, 5, 1, 15.0, tests=((5, 5, None), (20, 5, None))),
    Run("maml_5way", {"name": "maml", "inner_steps": 1, "inner_lr": 0.1}, 5, 1, 5, 8, 35.0, tests=((5, 1, 3),)),
    Run("maml_20way", {"name": "maml", "inner_steps": 5, "inner_lr": 0.1}, 20, 1, 5, 4, 15.0, tests=((20, 1, 5),)),
)
HEADLINE_KEYS = {
    ("protonet", 5, 1): "protonet_5w1s",
    ("protonet", 5, 5): "protonet_5w5s",
    ("protonet", 20, 1): "protonet_20w1s",
    ("protonet", 20, 5): "protonet_20w5s",
    ("maml", 5, 1): "maml_5w1s",
    ("maml", 20, 1): "maml_20w1s",
}
PAPER = {
    "protonet_5w1s": 98.8,
    "protonet_5w5s": 99.7,
    "protonet_20w1s": 96.0,
    "protonet_20w5s": 98.9,
    "maml_5w1s": 98.7,
    "maml_20w1s": 95.8,
}


def run_config(run: Run, data: Path) -> dict:
    """The run configuration (see :mod:`metamap.recipes`) ``run`` trains with."""
    family = {
        "name": "omniglot",
        "data": str(data),
        "n_way": run.train_way,
        "k_shot": run.shot,
        "n_query": run.train_query,
    }
    return {"family": family, "model": {"hidden": 64}, "learner": dict(run.learner), "seed": 0}


def train_and_test(run: Run, data: Path, runs_dir: Path, quick: bool, progress: bool = True) -> dict[str, Any]:
    """Train ``run`` within its budget (resuming its folder), test it, and keep the result in the folder.

    A result already in the folder for the same settings is returned as it is,
    so a benchmark that was stopped goes on where it stopped.
    """
    folder = runs_dir / run.name
    config = run_config(run, data)
    minutes = QUICK_MINUTES if quick else run.minutes
    episodes = QUICK_TEST_EPISODES if quick else TEST_EPISODES
    settings = {
        "run": config,
        "budget_minutes": minutes,
        "meta_batch": run.meta_batch,
        "lr": run.lr,
        "tests": [list(t) for t in run.tests],
        "test_episodes": episodes,
        "test_seed": TEST_SEED,
    }
    previous = load_cached(folder / "result.json", settings)
    if previous is not None:
        return previous
    learner = build_learner(config).to(pick_device("auto"))
    train = TrainConfig(
        steps=10**9,
        meta_batch=run.meta_batch,
        lr=run.lr,
        seed=0,
        checkpoint_every=50,
        log_every=1 if quick else 10,
        max_seconds=minutes * 60,
        progress=progress,
    )
    print(f"[omniglot] {run.name}: training for {minutes:g} min (resumes from {folder} if present)")
    family = replace(_images(data), n_way=run.train_way, k_shot=run.shot, n_query=run.train_query)
    result = meta_train(learner, family, train, run_dir=folder, run_config=config, resume=True)
    scores = {}
    for way, shot, steps in run.tests:
        test_family = replace(family.split("test"), n_way=way, k_shot=shot, n_query=TEST_QUERY)
        options = AdaptOptions(steps=steps)
        score = evaluate_learner(
            learner, test_family, n_tasks=episodes, seed=TEST_SEED, tasks_per_batch=10, options=options
        )
        scores[f"{way}w{shot}s"] = {**score.as_dict(), "adapt_steps": steps}
        print(f"[omniglot] {run.name} {way}-way {shot}-shot: {score}")
    return save_cached(
        folder / "result.json",
        settings,
        {"train_steps": result.final_step, "train_minutes": result.total_seconds / 60, "test": scores},
    )


@functools.lru_cache(maxsize=1)
def _images(data: Path):
    """The Omniglot family on ``data``, loaded once per process (decoding the images takes seconds);
    every run and test family is a ``replace`` of it with its own way, shot and query sizes."""
    return build_family({"name": "omniglot", "data": str(data)})


def _one_thread() -> None:
    torch.set_num_threads(1)


def run(quick: bool, json_path: Path) -> dict[str, Any]:
    """Train and test every run; with 2+ cores, two runs at a time (one thread each), longest first."""
    data = shared_data_dir() / "omniglot"
    runs_dir = runs_folder(json_path, quick)
    workers = 1 if quick else min(2, os.cpu_count() or 1)  # quick: one process loads the images once
    if workers == 1:
        results = {r.name: train_and_test(r, data, runs_dir, quick) for r in RUNS}
    else:
        order = sorted(RUNS, key=lambda r: -r.minutes)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread) as pool:
            futures = {r.name: pool.submit(train_and_test, r, data, runs_dir, quick, False) for r in order}
            results = {r.name: futures[r.name].result() for r in RUNS}
    headline: dict[str, float] = {}
    rows = []
    for name, res in results.items():
        kind = name.split("_")[0]
        for key, score in res["test"].items():
            way, shot = (int(v) for v in key[:-1].split("w"))
            label = HEADLINE_KEYS[(kind, way, shot)]
            headline[label] = 100 * score["mean"]
            rows.append(
                [
                    label,
                    f"{100 * score['mean']:.2f} ± {100 * score['ci95']:.2f}",
                    PAPER[label],
                    res["train_steps"],
                    f"{res['train_minutes']:.1f}",
                    f"{res['settings']['budget_minutes']:g}",
                ]
            )
    headline["train_minutes"] = sum(r["train_minutes"] for r in results.values())
    result = {
        "benchmark": "omniglot",
        "quick": quick,
        "headline": headline,
        "paper": PAPER,
        "runs": results,
        "test_episodes": QUICK_TEST_EPISODES if quick else TEST_EPISODES,
        "machine": machine(),
        "notes": __doc__,
    }
    write_json(json_path, result)
    print(format_table(["setting", "accuracy % (95% CI)", "paper", "meta-steps", "train min", "budget min"], rows))
    _plot_curves(runs_dir, json_path.with_suffix(".png"))
    return result


def _plot_curves(runs_dir: Path, path: Path) -> None:
    """Training loss against meta-step for each run."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 4))
    for run in RUNS:
        records = read_records(runs_dir / run.name)
        if not records:
            continue
        ax.plot([r["step"] for r in records], [r["train_loss"] for r in records], label=run.name)
    ax.set_xlabel("meta-step")
    ax.set_ylabel("training query loss (cross-entropy)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    save_png(fig, path, dpi=120)
