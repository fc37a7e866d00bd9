"""Benchmark ``sinusoid``: the protocol of Finn et al. 2017, section 5.1 and Table 2.

5-shot sine regression, MLP 1-40-40-1 ReLU, inner SGD lr 0.01 (one step in
meta-training), meta-batch 25, Adam 1e-3; MSE on 600 test tasks after 1, 5
and 10 inner steps, with 95% intervals, for MAML, first-order MAML, Meta-SGD,
Reptile, ANIL and the paper's baseline "pretrain on all tasks, then
fine-tune". The paper reports MAML 0.67 / 0.38 / 0.35 and pretrained
2.41 / 2.23 / 2.19 (its Figure/Table for K=5). Where we differ: 10 query points
per task (the paper uses K), and fewer meta-iterations than the paper's
70,000 (``STEPS``), because this runs on 2 CPU cores. Trained runs are kept
in ``<json stem>_runs/``; a rerun resumes them instead of training again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from metamap.bench.cache import runs_folder
from metamap.learners.base import AdaptOptions, MetaLearner
from metamap.plotting import pyplot, save_png
from metamap.recipes import build_learner
from metamap.report import format_table, machine, write_json
from metamap.tasks.family import make_generator
from metamap.tasks.sinusoid import Sinusoid
from metamap.training import TrainConfig, evaluate_learner, meta_train

LEARNER_NAMES = ("maml", "fomaml", "metasgd", "reptile", "anil", "pretrain")
META_LEARNERS = ("maml", "fomaml", "metasgd", "reptile", "anil")
EVAL_STEPS = (1, 5, 10)
STEPS = 30_000
QUICK_STEPS = 20
TEST_TASKS = 600
QUICK_TEST_TASKS = 20
TEST_SEED = 1234
PAPER = {"maml": (0.67, 0.38, 0.35), "pretrain": (2.41, 2.23, 2.19)}
# Reptile takes several SGD steps on its task's data per meta-step (Nichol et al. 2018).
LEARNER_OPTIONS: dict[str, dict[str, Any]] = {"reptile": {"inner_steps": 5}}


def run_config(name: str, seed: int = 0) -> dict[str, Any]:
    options = {"inner_steps": 1, "inner_lr": 0.01, **LEARNER_OPTIONS.get(name, {})}
    return {
        "family": {"name": "sinusoid", "k_shot": 5, "n_query": 10},
        "model": {"hidden": [40, 40]},
        "learner": {"name": name, **options},
        "seed": seed,
    }


def train(name: str, steps: int, run_dir: Path, seed: int = 0) -> tuple[MetaLearner, float]:
    """Meta-train learner ``name`` for ``steps`` meta-steps in ``run_dir`` (resumed if it holds a checkpoint).

    Returns the learner and its total training seconds.
    """
    run = run_config(name, seed)
    learner = build_learner(run)
    config = TrainConfig(steps=steps, meta_batch=25, lr=1e-3, seed=seed, checkpoint_every=5000, log_every=100)
    result = meta_train(learner, Sinusoid(k_shot=5, n_query=10), config, run_dir=run_dir, run_config=run, resume=True)
    return learner, result.total_seconds


def score(learner: MetaLearner, n_tasks: int = TEST_TASKS) -> dict[int, dict[str, float]]:
    """MSE mean and 95% CI after each of ``EVAL_STEPS`` inner steps, on the same test tasks."""
    family = Sinusoid(k_shot=5, n_query=10, split_name="test")
    return {
        steps: evaluate_learner(
            learner, family, n_tasks=n_tasks, seed=TEST_SEED, options=AdaptOptions(steps=steps)
        ).as_dict()
        for steps in EVAL_STEPS
    }


def table_rows(scores: dict[str, dict[int, dict[str, float]]]) -> list[list[str]]:
    rows = []
    for name, by_steps in scores.items():
        cells = [_cell(by_steps[s]) for s in EVAL_STEPS]
        paper = PAPER.get(name)
        rows.append([name, *cells, " / ".join(f"{v:.2f}" for v in paper) if paper else "-"])
    return rows


def _cell(score: dict[str, float]) -> str:
    if score["diverged"]:
        return f"diverged ({score['diverged']}/{score['n_tasks']})"
    return f"{score['mean']:.3f} ± {score['ci95']:.3f}"


def plot_adapted_curves(learners: dict[str, MetaLearner], path: Path, n_tasks: int = 3, steps: int = 10) -> None:
    """Adapted predictions of each learner on a few test tasks: true curve, support points, fits."""
    plt = pyplot()

    episode = Sinusoid(k_shot=5, n_query=10, split_name="test").sample(n_tasks, make_generator(TEST_SEED))
    grid = torch.linspace(-5, 5, 200)[None, :, None].expand(n_tasks, -1, -1)
    truth = Sinusoid.curve(episode.meta["amplitude"], episode.meta["phase"], grid)
    fig, axes = plt.subplots(1, n_tasks, figsize=(4.5 * n_tasks, 3.5), sharey=True)
    for t, ax in enumerate(axes):
        ax.plot(grid[t, :, 0], truth[t, :, 0], color="black", lw=2, label="true function")
        ax.scatter(
            episode.x_support[t, :, 0], episode.y_support[t, :, 0], color="red", zorder=5, label="5 support points"
        )
        for (name, learner), color in zip(learners.items(), ("tab:blue", "tab:orange", "tab:green", "tab:purple")):
            for k in sorted({1, steps}):
                pred = (
                    learner.adapt(episode.x_support, episode.y_support, options=AdaptOptions(steps=k))
                    .predict(grid)
                    .detach()
                )
                ax.plot(
                    grid[t, :, 0],
                    pred[t, :, 0],
                    color=color,
                    lw=1.4,
                    ls="-" if k == steps else ":",
                    label=f"{name}, {k} step{'s' if k > 1 else ''}",
                )
        ax.set_title(f"test task {t + 1}")
        ax.set_xlabel("x")
    axes[0].set_ylabel("y")
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_png(fig, path, dpi=120)


def plot_mse_by_steps(scores: dict[str, dict[int, dict[str, float]]], path: Path) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, by_steps in scores.items():
        means = [by_steps[s]["mean"] if not by_steps[s]["diverged"] else float("nan") for s in EVAL_STEPS]
        errors = [by_steps[s]["ci95"] for s in EVAL_STEPS]
        ax.errorbar(EVAL_STEPS, means, yerr=errors, marker="o", capsize=3, label=name)
    for name, values in PAPER.items():
        ax.plot(EVAL_STEPS, values, ls="--", color="gray", lw=0.8)
        ax.annotate(f"paper {name}", (EVAL_STEPS[-1], values[-1]), fontsize=7, color="gray")
    ax.set_xlabel("inner gradient steps at test time")
    ax.set_ylabel("query MSE (600 test tasks, 95% CI)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path, dpi=120)


def run(quick: bool, json_path: Path) -> dict[str, Any]:
    steps = QUICK_STEPS if quick else STEPS
    n_tasks = QUICK_TEST_TASKS if quick else TEST_TASKS
    learners: dict[str, MetaLearner] = {}
    scores: dict[str, dict[int, dict[str, float]]] = {}
    seconds: dict[str, float] = {}
    runs_dir = runs_folder(json_path, quick)
    for name in LEARNER_NAMES:
        print(f"[sinusoid] meta-training {name} for {steps} steps in {runs_dir / name}")
        learners[name], seconds[name] = train(name, steps, runs_dir / name)
        scores[name] = score(learners[name], n_tasks)
    best = min(META_LEARNERS, key=lambda n: scores[n][1]["mean"])
    headline = {
        "maml_mse_1step": scores["maml"][1]["mean"],
        "maml_mse_5step": scores["maml"][5]["mean"],
        "maml_mse_10step": scores["maml"][10]["mean"],
        "best_mse_1step": scores[best][1]["mean"],
    }
    result = {
        "benchmark": "sinusoid",
        "quick": quick,
        "headline": headline,
        "best_learner_1step": best,
        "protocol": "Finn et al. 2017 sec. 5.1 / Table 2: K=5, MLP 1-40-40-1, inner lr 0.01, meta-batch 25",
        "settings": {
            "meta_steps": steps,
            "test_tasks": n_tasks,
            "test_seed": TEST_SEED,
            "n_query": 10,
            "outer": "adam 1e-3",
            "learner_options": {n: run_config(n)["learner"] for n in LEARNER_NAMES},
        },
        "paper": {k: dict(zip(map(str, EVAL_STEPS), v)) for k, v in PAPER.items()},
        "mse": {name: {str(k): v for k, v in by.items()} for name, by in scores.items()},
        "train_seconds": seconds,
        "machine": machine(),
    }
    write_json(json_path, result)
    print(format_table(["learner", "1 step", "5 steps", "10 steps", "paper"], table_rows(scores)))
    print(f"best meta-learner after 1 step: {best} ({scores[best][1]['mean']:.3f})")
    plot_mse_by_steps(scores, json_path.with_suffix(".png"))
    plot_adapted_curves(
        {"maml": learners["maml"], "pretrain": learners["pretrain"]},
        json_path.with_name(json_path.stem + "_curves.png"),
    )
    print(f"wrote {json_path} and plots beside it")
    return result
