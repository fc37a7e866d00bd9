"""Synthetic physical systems, and the augmentation ablation: few-shot MSE with and without them.

:class:`SyntheticSystems` is a :class:`~metamap.physics.family.SystemFamily`
whose bank is a given set of dense trajectories (drawn from a generator)
instead of simulated systems. Their true parameters are unknown:
``meta["params"]`` is NaN for them.

Protocol (that of :mod:`metamap.physics.experiment`, with few real systems):
``n_real`` meta-train systems; each generator is fitted on their dense
noise-free trajectories (``[G, n_out]`` flattened) and draws
``n_synthetic`` synthetic systems; the augmented run draws
``synthetic_fraction`` of every meta-batch from them (same K, noise and
query sampling). For each condition (``"none"`` = no augmentation, then one
per generator) MAML and the pretrained network are trained with
:func:`~metamap.physics.experiment.train_learners` (same meta-steps, same
seed), their adaptation settings chosen on the real meta-val systems, and
both are scored by dense MSE on the same real test tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from metamap.augment.family import augmented_conditions
from metamap.errors import ShapeError, describe
from metamap.physics.experiment import NetworkMethod, choose_steps, dense_mse, predict_dense, train_learners
from metamap.physics.family import SystemFamily, grid_points
from metamap.physics.systems import System
from metamap.tasks.family import make_generator

METHODS = ("maml", "pretrain_finetune")  # scored methods; "pretrain_finetune" adapts the "pretrain" network


@dataclass(frozen=True, eq=False)
class SyntheticSystems(SystemFamily):
    """Tasks of synthetic systems: ``states [n, G, n_out]`` on the system's dense grid (every split)."""

    states: np.ndarray | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        n_grid = grid_points(self.system)[0].size
        states = self.states
        if states is None or states.ndim != 3 or states.shape[1:] != (n_grid, self.system.n_out) or not len(states):
            raise ShapeError(
                f"SyntheticSystems({self.system.name}): expected states [n >= 1, {n_grid}, "
                f"{self.system.n_out}], got {describe(states)}"
            )

    @property
    def bank(self) -> tuple[np.ndarray, np.ndarray]:
        """``(params [n, P]`` all NaN, ``states [n, G, n_out])``."""
        return np.full((self.states.shape[0], len(self.system.names)), np.nan), self.states


def synthetic_like(real: SystemFamily, states: np.ndarray | torch.Tensor) -> SyntheticSystems:
    """A :class:`SyntheticSystems` with the task settings (K, query, noise, dense) of ``real``."""
    fields = {name: getattr(real, name) for name in ("system", "k_shot", "n_query", "noise", "seed", "dense")}
    return SyntheticSystems(**fields, states=np.asarray(states, dtype=np.float32))


def run_ablation(
    system: System,
    *,
    seed: int,
    generators: Sequence[str] = ("diffusion",),
    n_real: int = 50,
    n_synthetic: int = 500,
    synthetic_fraction: float = 0.5,
    steps: int = 600,
    k_shot: int = 10,
    noise: float = 0.05,
    val_tasks: int = 30,
    test_tasks: int = 40,
    reference_n_real: int | None = None,
    generator_options: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Per condition (``"none"``, each generator, ``"real_<n>"``): test MSE per task of each scored method.

    ``reference_n_real``: also train without augmentation on that many *real* meta-train systems
    (condition ``"real_<n>"``; same val and test systems): what more real data would give.

    Returns ``{"mse": {condition: {method: [T]}}, "steps_chosen_on_val": ..., "generators": {name: info},
    "examples": {"real": [3, G, n_out], name: [3, G, n_out]}}`` (lists, JSON-able).
    """
    family = SystemFamily(
        system,
        k_shot=k_shot,
        n_query=30,
        noise=noise,
        seed=seed,
        n_systems={"train": n_real, "val": val_tasks, "test": test_tasks},
    )
    real_states = family.bank[1]
    dense = replace(family, dense=True)
    test = dense.split("test").sample(test_tasks, make_generator(seed + 3))
    conditions, info, examples = augmented_conditions(
        family,
        real_states,
        lambda drawn: synthetic_like(family, drawn),
        generators,
        n_synthetic,
        synthetic_fraction,
        seed,
        generator_options,
    )
    if reference_n_real is not None:
        conditions[f"real_{reference_n_real}"] = replace(
            family, n_systems={**family.n_systems, "train": reference_n_real}
        )
    mse: dict[str, dict[str, list[float]]] = {}
    chosen: dict[str, dict[str, Any]] = {}
    for condition, train_family in conditions.items():
        learners = train_learners(train_family, ["maml"], steps, seed)
        choices = {
            m: choice.settings for m, choice in choose_steps(dense, learners, val_tasks, seed + 1, METHODS).items()
        }
        chosen[condition] = choices
        mse[condition] = {
            m: dense_mse(predict_dense(NetworkMethod(m, learners, seed), test, choices[m]), test.y_query).tolist()
            for m in METHODS
        }
    return {"mse": mse, "steps_chosen_on_val": chosen, "generators": info, "examples": examples}
