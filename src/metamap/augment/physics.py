"""The augmentation ablation on one physical system: few-shot MSE with and without synthetic systems.

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
from dataclasses import replace
from typing import Any

from metamap.augment.family import augmented_conditions, synthetic_like
from metamap.physics.experiment import NetworkMethod, choose_steps, dense_mse, predict_dense, train_learners
from metamap.physics.family import SystemFamily
from metamap.physics.systems import System
from metamap.tasks.family import make_generator

METHODS = ("maml", "pretrain_finetune")  # scored methods; "pretrain_finetune" adapts the "pretrain" network


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
