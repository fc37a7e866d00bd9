"""The benchmark protocols as data splits: who trains, who adapts, on which steps.

- **P1, new sensors**: one city; its sensors split 70/30 at random (by seed).
  Meta-train on the 70% over days 1-5; each target sensor adapts on its own
  day 5 (or 6 hours of it, 06:00-12:00) and is tested on days 6-7.
- **P2, new city**: meta-train on every sensor of the source city over all its
  days; adapt to each sensor of the target city from its first day; test on
  the rest.

Normalization statistics come from the meta-training readings only (the
source sensors over the training period); target readings never enter them.
In both protocols 10% of the training sensors are held out as validation
sensors, on which adaptation settings are chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from metamap.errors import DataError
from metamap.preprocessing import Standardizer
from metamap.traffic.data import TrafficData
from metamap.traffic.experiment import ExperimentConfig, Target
from metamap.traffic.family import SensorTasks
from metamap.traffic.features import SeriesFeatures, fit_scaler

VAL_FRACTION = 0.1
SIX_HOURS = (6 * 12, 12 * 12)  # 06:00-12:00 at 5 min, as steps into the support day


@dataclass(frozen=True)
class Setup:
    """A protocol ready to run: the meta-training family, validation sensors and the targets."""

    family: SensorTasks
    targets: dict[str, Target]
    validations: dict[str, Target]
    scaler: Standardizer


def new_sensors(
    data: TrafficData,
    config: ExperimentConfig,
    train_days: int = 5,
    target_fraction: float = 0.3,
    support_days: int = 1,
) -> Setup:
    """P1: split ``data``'s sensors; targets adapt on the last ``support_days`` of the training days."""
    per_day = data.steps_per_day
    days = data.n_steps // per_day
    if days < train_days + 1:
        raise DataError(f"P1 needs at least {train_days + 1} whole days; {data.name} has {days}")
    order = np.random.default_rng(config.seed).permutation(data.n_sensors)
    n_target = max(1, round(target_fraction * data.n_sensors))
    source, target = np.sort(order[n_target:]), np.sort(order[:n_target])
    train_stop = train_days * per_day
    scaler = fit_scaler(data.values[:train_stop, source], data.mask[:train_stop, source])
    features = SeriesFeatures(data, scaler, graph_hops=config.hops)
    family, validation = source_family(features, source, (0, train_stop), config)
    support = (train_stop - support_days * per_day, train_stop)
    test = (train_stop, days * per_day)
    nodes = torch.as_tensor(target)
    six_hours = (support[1] - per_day + SIX_HOURS[0], support[1] - per_day + SIX_HOURS[1])
    targets = {"day": Target(features, nodes, support, test), "6h": Target(features, nodes, six_hours, test)}
    # Validation sensors adapt on the same kind of support, one day earlier, and are scored before it.
    earlier = support_days * per_day
    validations = {
        "day": replace(
            validation, support=(support[0] - earlier, support[1] - earlier), test=(0, support[0] - earlier)
        ),
        "6h": replace(
            validation, support=(six_hours[0] - earlier, six_hours[1] - earlier), test=(0, six_hours[0] - earlier)
        ),
    }
    return Setup(family, targets, validations, scaler)


def new_city(source: TrafficData, target: TrafficData, config: ExperimentConfig, support_days: int = 1) -> Setup:
    """P2: meta-train on all of ``source``; ``target``'s sensors adapt on its first ``support_days``."""
    per_day = target.steps_per_day
    support = (0, support_days * per_day)
    if target.n_steps < support[1] + per_day // 4:
        raise DataError(
            f"P2 needs the target city's {support_days} support day(s) and test steps after them; "
            f"{target.name} has {target.n_steps} steps"
        )
    scaler = fit_scaler(source.values, source.mask)
    features = SeriesFeatures(source, scaler, graph_hops=config.hops)
    family, validation = source_family(features, np.arange(source.n_sensors), (0, source.n_steps), config)
    target_features = SeriesFeatures(target, scaler, graph_hops=config.hops)
    nodes = torch.arange(target.n_sensors)
    targets = {"city": Target(target_features, nodes, support, (support[1], target.n_steps))}
    return Setup(family, targets, {"city": validation}, scaler)


def source_family(
    features: SeriesFeatures, sensors: np.ndarray, period: tuple[int, int], config: ExperimentConfig
) -> tuple[SensorTasks, Target]:
    """Meta-training tasks on 90% of ``sensors``; the other 10% validate adaptation settings."""
    order = np.random.default_rng(config.seed + 1).permutation(sensors)
    n_val = max(1, round(VAL_FRACTION * len(sensors)))
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    family = SensorTasks(
        [features],
        [{"train": train.tolist(), "val": val.tolist()}],
        [period],
        support_steps=config.support_steps,
        n_support=config.n_support,
        n_query=config.n_query,
    )
    start, stop = period
    validation = Target(
        features, torch.as_tensor(val), (stop - config.support_steps, stop), (start, stop - config.support_steps)
    )
    return family, validation
