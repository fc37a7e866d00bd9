"""Residual hybrid for a misspecified equation: the known equation's fit plus a meta-learned correction.

Data come from the nonlinear pendulum (theta(0) = 1 rad, where sin(theta)
is far from theta); the equation assumed is the small-angle oscillator
(:data:`~metamap.physics.systems.SMALL_ANGLE_PENDULUM`). Per task, least
squares fits the small-angle equation to the K noisy observations; its
trajectory misses the data by a residual. A network meta-learned across
the meta-train tasks (MAML / Meta-SGD, same MLP and budget as
:mod:`metamap.physics.experiment`) models that residual as a function of
time, is adapted on the K residuals of a new task (steps chosen on
meta-val, 0 included), and the prediction is fit + network. Meta-val also
decides whether to correct at all: where the corrected fit is no better than
the fit alone on the meta-val tasks, the hybrid returns the fit. Scored by
dense-grid MSE against the noise-free truth, beside the misspecified fit
alone and the fit of the correct (nonlinear) equation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from metamap.physics.experiment import (
    GRIDS,
    META_LEARNERS,
    NetworkMethod,
    TaskFits,
    TuningGrids,
    choose_steps,
    dense_mse,
    least_squares_tasks,
    predict_dense,
    summarize,
    train_learners,
    tuning_record,
)
from metamap.physics.family import SystemFamily
from metamap.physics.systems import SMALL_ANGLE_PENDULUM, SYSTEMS, System
from metamap.tasks.episode import Episode
from metamap.tasks.family import check_split, make_generator


@dataclass(frozen=True, eq=False)
class ResidualFamily:
    """Residual tasks drawn (with replacement) from fixed per-split episodes ``tasks[split]``.

    Support targets: observations minus the misspecified fit to them ``[T, K, 1]``; query targets: the
    noise-free truth minus that fit on the dense grid ``[T, G, 1]``. ``system``: the data's system.
    """

    system: System
    tasks: dict[str, Episode]
    split_name: str = "train"

    def split(self, name: str) -> ResidualFamily:
        return replace(self, split_name=check_split(name))

    def sample(self, n_tasks: int, generator: torch.Generator) -> Episode:
        episode = self.tasks[self.split_name]
        return episode.select(torch.randint(episode.n_tasks, (n_tasks,), generator=generator))


def residual_episode(episode: Episode, fits: TaskFits) -> Episode:
    """A dense episode's targets minus the misspecified ``fits`` (support: at its ``support_index``)."""
    trajectories = torch.as_tensor(fits.trajectories, dtype=torch.float32)  # [T, G, 1]
    index = episode.meta["support_index"]
    at_support = torch.gather(trajectories, 1, index[..., None].expand(-1, -1, trajectories.shape[-1]))
    return replace(episode, y_support=episode.y_support - at_support, y_query=episode.y_query - trajectories, meta={})


def misspecified_fits(
    family: SystemFamily, split: str, n_tasks: int, n_starts: int, seed: int, progress: bool
) -> tuple[Episode, TaskFits]:
    """``n_tasks`` dense tasks of ``split`` and the small-angle equation's least-squares fits to their supports."""
    episode = family.split(split).sample(n_tasks, make_generator(seed))
    starts = np.stack([SMALL_ANGLE_PENDULUM.sample(n_starts, np.random.default_rng(seed + t)) for t in range(n_tasks)])
    return episode, least_squares_tasks(SMALL_ANGLE_PENDULUM, episode, starts, progress)


def run_misspecified(
    *,
    k_shot: int = 10,
    noise: float = 0.05,
    steps: int = 2000,
    train_tasks: int = 400,
    val_tasks: int = 50,
    test_tasks: int = 60,
    ls_starts: int = 4,
    seed: int = 0,
    learner_names: Sequence[str] = META_LEARNERS,
    progress: bool = True,
    device: torch.device | str = "cpu",
    grids: TuningGrids = GRIDS,
) -> dict[str, Any]:
    """Pendulum data, small-angle equation: misspecified fit, residual hybrid, correct-equation fit (the
    correction's steps chosen from ``grids.meta`` on meta-val)."""
    system = SYSTEMS["pendulum"]
    n_systems = {"train": train_tasks, "val": val_tasks, "test": test_tasks}
    family = SystemFamily(system, k_shot=k_shot, noise=noise, seed=seed, n_systems=n_systems, dense=True)
    fitted = {
        split: misspecified_fits(family, split, n, ls_starts, seed + i, progress)
        for i, (split, n) in enumerate(n_systems.items())
    }
    residuals = ResidualFamily(system, {split: residual_episode(*pair) for split, pair in fitted.items()})
    learners = train_learners(residuals, learner_names, steps, seed, device)
    chosen = choose_steps(residuals, learners, val_tasks, seed + 1, methods=learner_names, grids=grids)
    best = min(learner_names, key=lambda name: chosen[name].score)
    # choose_steps scores the corrected fit's dense MSE on these meta-val tasks (the same draw); the fit
    # alone scores the mean squared residual itself
    val_episode = residuals.split("val").sample(val_tasks, make_generator(seed + 1))
    fit_alone_on_val = float(np.mean(dense_mse(torch.zeros_like(val_episode.y_query), val_episode.y_query)))
    correct_at_all = chosen[best].score < fit_alone_on_val
    episode, fits = fitted["test"]
    misfit = torch.as_tensor(fits.trajectories, dtype=torch.float32)
    correction = predict_dense(NetworkMethod(best, learners, seed), residuals.tasks["test"], chosen[best].settings)
    hybrid = misfit + correction if correct_at_all else misfit
    starts = np.stack([system.sample(ls_starts, np.random.default_rng(seed + t)) for t in range(test_tasks)])
    correct = least_squares_tasks(system, episode, starts, progress)
    mse = {
        "misspecified_least_squares": dense_mse(misfit, episode.y_query),
        "residual_hybrid": dense_mse(hybrid, episode.y_query),
        "residual_network_always": dense_mse(misfit + correction, episode.y_query),
        "correct_equation_least_squares": dense_mse(
            torch.as_tensor(correct.trajectories, dtype=torch.float32), episode.y_query
        ),
    }
    return {
        "data": system.name,
        "assumed_equation": SMALL_ANGLE_PENDULUM.name,
        "k_shot": k_shot,
        "noise_std": noise,
        "tasks": n_systems,
        "residual_learner_chosen_on_val": best,
        "val_mse": {"fit_alone": fit_alone_on_val, f"fit_plus_{best}": chosen[best].score},
        "corrects_on_val": bool(correct_at_all),
        "inner_lr": {n: learner.inner_lr for n, learner in learners.items()},
        "tuning_on_val": {name: tuning_record(choice) for name, choice in chosen.items()},
        "mse": {name: summarize(values) for name, values in mse.items()},
        "mse_ratio_vs_misspecified_least_squares": float(
            np.mean(mse["residual_hybrid"]) / np.mean(mse["misspecified_least_squares"])
        ),
        "residual_hybrid_wins": float(np.mean(mse["residual_hybrid"] < mse["misspecified_least_squares"])),
    }
