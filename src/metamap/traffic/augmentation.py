"""The augmentation ablation on traffic P1 (new sensors) with scarce source sensors.

Protocol: P1 of :mod:`metamap.traffic.protocols` (METR-LA week, sensors
split 70/30 by seed, targets adapt on their own day 5 and are scored on days
6-7), with the per-node model (no graph features, so that a synthetic
sensor needs no neighbours) and only ``n_real`` of the meta-train sensors
(drawn by seed; the validation sensors are the protocol's). Each generator is
fitted on those sensors' scaled series over the 5 training days (one vector
``[5 * 288]`` per sensor) and draws ``n_synthetic`` synthetic sensors; the
augmented run draws ``synthetic_fraction`` of every meta-batch from them.
MAML and pretrain + fine-tune are trained per condition (same steps, same
seed) and scored by masked MAE at 15/30/60 min on the targets; persistence
and the historical average are given beside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from metamap.augment.family import augmented_conditions
from metamap.traffic.data import TrafficData
from metamap.traffic.experiment import ExperimentConfig, compare, train_methods
from metamap.traffic.family import SensorTasks
from metamap.traffic.features import SeriesFeatures
from metamap.traffic.protocols import Setup, new_sensors

METHODS = ("maml", "pretrain_finetune", "historical_average", "persistence")


def scarce_family(setup: Setup, n_real: int, seed: int) -> tuple[SensorTasks, np.ndarray]:
    """The P1 meta-train family restricted to ``n_real`` of its train sensors (drawn by ``seed``); their ids."""
    family = setup.family
    pool = family.nodes[0]["train"].numpy()
    chosen = np.sort(np.random.default_rng([seed, n_real]).choice(pool, size=min(n_real, len(pool)), replace=False))
    scarce = SensorTasks(
        family.sources,
        [{"train": chosen.tolist(), "val": family.nodes[0]["val"].tolist()}],
        family.periods,
        support_steps=family.support_steps,
        n_support=family.n_support,
        n_query=family.n_query,
    )
    return scarce, chosen


def synthetic_sensors(family: SensorTasks, scaled: np.ndarray) -> SensorTasks:
    """Tasks of synthetic sensors whose scaled series over the training period are ``scaled [n, steps]``.

    The readings (mph, ``scaler.inverse_transform``) sit at the real city's time stamps (same calendar features),
    all observed; every sensor is a ``"train"`` node.
    """
    features = family.sources[0]
    start, stop = family.periods[0]
    values = features.scaler.inverse_transform(torch.as_tensor(scaled, dtype=torch.float32)).numpy().T  # [steps, n]
    data = TrafficData(
        values=np.ascontiguousarray(values),
        mask=np.ones(values.shape, dtype=bool),
        times=features.data.times[start:stop],
        sensor_ids=tuple(f"synthetic{i}" for i in range(values.shape[1])),
        step_minutes=features.data.step_minutes,
        name="synthetic",
        timezone=features.data.timezone,
    )
    synthetic = SeriesFeatures(data, features.scaler, graph_hops=0, windows=features.spec)
    return SensorTasks(
        [synthetic],
        [{"train": list(range(values.shape[1]))}],
        [(0, stop - start)],
        support_steps=family.support_steps,
        n_support=family.n_support,
        n_query=family.n_query,
    )


def run_ablation(
    data: TrafficData,
    *,
    seed: int,
    generators: Sequence[str] = ("diffusion",),
    n_real: int = 20,
    n_synthetic: int = 500,
    synthetic_fraction: float = 0.5,
    steps: int = 600,
    generator_options: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Per condition (``"none"`` and each generator): each method's errors on the P1 targets (day support).

    Returns ``{"errors": {condition: {method: {"15min": {...}, "30min": ..., "1h": ...}}},
    "generators": {name: info}, "real_sensors": [...], "examples": {"real": [3, steps], name: [3, steps]}}``.
    """
    config = ExperimentConfig(model="node", steps=steps, methods=METHODS, seed=seed)
    setup = new_sensors(data, config)
    config = setup.config
    family, chosen = scarce_family(setup, n_real, seed)
    start, stop = family.periods[0]
    real_series = family.sources[0].target[torch.as_tensor(chosen), start:stop].numpy()  # [n_real, steps]
    conditions, info, examples = augmented_conditions(
        family,
        real_series,
        lambda drawn: synthetic_sensors(family, drawn),
        generators,
        n_synthetic,
        synthetic_fraction,
        seed,
        generator_options,
    )
    targets = {"day": setup.targets["day"]}
    errors: dict[str, dict[str, Any]] = {}
    for condition, train_family in conditions.items():
        trained = train_methods(train_family, config)
        results = compare(trained, targets, setup.validations, config)["day"]
        errors[condition] = {m: r.errors for m, r in results.items()}
    return {"errors": errors, "generators": info, "real_sensors": chosen.tolist(), "examples": examples}
