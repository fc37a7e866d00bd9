"""The benchmark protocols as data splits: who trains, who adapts, on which steps.

- **P1, new sensors**: one city; its sensors split 70/30 at random (by seed).
  Meta-train on the 70% over days 1-5; each target sensor adapts on the last
  support block of the training days (``config.support_steps``, one day by
  default: day 5; also 06:00-12:00 of day 5, where 6 hours hold enough
  windows) and is tested on the days after. The protocol is strict: meta-training sees the
  source sensors only, on the graph among themselves, so no target reading
  enters any input before the targets adapt. At adaptation and test time the
  graph model sees the whole network: the targets' own readings and those of
  their neighbours, up to each forecast's origin.
- **P2, new city**: meta-train on every sensor of the source city over all its
  days; adapt to each sensor of the target city on its first support block
  (one day by default); test on the rest.

Normalization statistics come from the meta-training readings only (the
source sensors over the training period); target readings never enter them.
In both protocols 10% of the training sensors are held out as validation
sensors, on which the base forecast and the adaptation settings are chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from metamap.arguments import duration_label
from metamap.errors import DataError
from metamap.experiment import Choice
from metamap.preprocessing import Standardizer
from metamap.traffic.data import TrafficData
from metamap.traffic.experiment import AUTO, ExperimentConfig, Target, choose_base
from metamap.traffic.family import SensorTasks
from metamap.traffic.features import SeriesFeatures, fit_scaler

VAL_FRACTION = 0.1


@dataclass(frozen=True)
class Setup:
    """A protocol ready to run: the meta-training family, validation sensors and the targets.

    ``config`` is the experiment's, its base forecast chosen (``base_choice``:
    how, where ``config.base`` was ``"auto"``).
    """

    family: SensorTasks
    targets: dict[str, Target]
    validations: dict[str, Target]
    scaler: Standardizer
    config: ExperimentConfig
    base_choice: Choice | None = None


def min_test_steps(steps_per_day: int) -> int:
    """The fewest steps a protocol scores a target (or the validation sensors) on: a quarter day."""
    return steps_per_day // 4


def min_train_steps(support_steps: int, steps_per_day: int) -> int:
    """P1's shortest training period: the targets' support, the validation sensors' one before it and a
    quarter day before that to score the validation sensors on."""
    return 2 * support_steps + min_test_steps(steps_per_day)


def min_train_days(support_steps: int, steps_per_day: int) -> int:
    """:func:`min_train_steps` in whole days (P1 trains on whole days)."""
    return -(-min_train_steps(support_steps, steps_per_day) // steps_per_day)


def fits_test(data: TrafficData, train_days: int) -> bool:
    """Whether ``data`` holds at least :func:`min_test_steps` after ``train_days`` whole training days."""
    return data.n_steps >= train_days * data.steps_per_day + min_test_steps(data.steps_per_day)


def new_sensors(
    data: TrafficData,
    config: ExperimentConfig,
    train_days: int = 5,
    target_fraction: float = 0.3,
) -> Setup:
    """P1: split ``data``'s sensors; targets adapt on the last ``config.support_steps`` of the training days.

    The targets are keyed by their support: ``"day"`` for a support day, else its duration (``"6h"``); with a
    support day, ``"6h"`` also adapts on 06:00-12:00 of the last training day where that day's validation
    block fits. Tested on every step after the training days (at least a quarter day).
    """
    per_day = data.steps_per_day
    train_stop = train_days * per_day
    if not fits_test(data, train_days):
        raise DataError(
            f"P1 needs {train_days} training day(s) and a quarter day of test steps after them "
            f"({train_stop + min_test_steps(per_day)} steps); {data.name} has {data.n_steps}"
        )
    earlier = config.support_steps  # validation sensors adapt on the block before the targets' and test before it
    if train_stop < min_train_steps(earlier, per_day):
        raise DataError(
            f"P1 with a support of {earlier} steps needs {min_train_steps(earlier, per_day)} training steps (the "
            f"targets' support, the validation sensors' one before it and a quarter day to score them); "
            f"{train_days} training days hold {train_stop}"
        )
    order = np.random.default_rng(config.seed).permutation(data.n_sensors)
    n_target = max(1, round(target_fraction * data.n_sensors))
    source, target = np.sort(order[n_target:]), np.sort(order[:n_target])
    scaler = fit_scaler(data.values[:train_stop, source], data.mask[:train_stop, source])
    source_features = SeriesFeatures(data.sensors(source), scaler, config.hops, config.windows)
    family, validation, config, choice = source_family(source_features, np.arange(len(source)), (0, train_stop), config)
    features = SeriesFeatures(data, scaler, config.hops, config.windows)
    support = (train_stop - earlier, train_stop)
    test = (train_stop, data.n_steps)
    nodes = torch.as_tensor(target)
    main = "day" if earlier == per_day else duration_label(earlier * data.step_minutes)
    targets = {main: Target(features, nodes, support, test)}
    # Validation sensors adapt on the same kind of support, one block earlier, and are scored before it.
    validations = {
        main: replace(validation, support=(support[0] - earlier, support[1] - earlier), test=(0, support[0] - earlier))
    }
    morning = (support[1] - per_day + per_day // 4, support[1] - per_day + per_day // 2)  # 06:00-12:00
    morning_fits = morning[1] - morning[0] >= 2 * (features.history + features.horizon)
    if main == "day" and morning_fits and morning[0] - earlier >= min_test_steps(per_day):
        targets["6h"] = Target(features, nodes, morning, test)
        validations["6h"] = replace(
            validation, support=(morning[0] - earlier, morning[1] - earlier), test=(0, morning[0] - earlier)
        )
    return Setup(family, targets, validations, scaler, config, choice)


def new_city(source: TrafficData, target: TrafficData, config: ExperimentConfig) -> Setup:
    """P2: meta-train on all of ``source``; ``target``'s sensors adapt on its first ``config.support_steps``."""
    support = (0, config.support_steps)
    if target.n_steps < support[1] + min_test_steps(target.steps_per_day):
        raise DataError(
            f"P2 needs the target city's {support[1]} support steps and a quarter day of test steps after them; "
            f"{target.name} has {target.n_steps} steps"
        )
    scaler = fit_scaler(source.values, source.mask)
    features = SeriesFeatures(source, scaler, config.hops, config.windows)
    family, validation, config, choice = source_family(
        features, np.arange(source.n_sensors), (0, source.n_steps), config
    )
    target_features = SeriesFeatures(target, scaler, config.hops, config.windows)
    nodes = torch.arange(target.n_sensors)
    targets = {"city": Target(target_features, nodes, support, (support[1], target.n_steps))}
    return Setup(family, targets, {"city": validation}, scaler, config, choice)


def source_family(
    features: SeriesFeatures, sensors: np.ndarray, period: tuple[int, int], config: ExperimentConfig
) -> tuple[SensorTasks, Target, ExperimentConfig, Choice | None]:
    """Meta-training tasks on 90% of ``sensors``; the other 10% validate the base forecast and adaptation settings.

    Returns the family, the validation target, ``config`` with its base forecast chosen on the validation
    sensors where it was ``"auto"``, and that choice (None where the base was given).
    """
    start, stop = period
    if config.seasonal and stop - start <= features.data.steps_per_day:
        raise DataError(
            f"meta-training on {stop - start} steps of {features.data.name}, at most a day: no training window "
            f"holds a reading a day earlier, so the networks would learn the seasonal inputs as copies of the "
            f"last reading; leave them out (--no-seasonal) or train on more than a day"
        )
    order = np.random.default_rng(config.seed + 1).permutation(sensors)
    n_val = max(1, round(VAL_FRACTION * len(sensors)))
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    validation = Target(
        features, torch.as_tensor(val), (stop - config.support_steps, stop), (start, stop - config.support_steps)
    )
    choice = None
    if config.base == AUTO:
        choice = choose_base(validation)
        config = replace(config, base=choice.settings["base"])
        validation = replace(validation, features=features.with_windows(config.windows))
    family = SensorTasks(
        [validation.features],
        [{"train": train.tolist(), "val": val.tolist()}],
        [period],
        support_steps=config.support_steps,
        n_support=config.n_support,
        n_query=config.n_query,
    )
    return family, validation, config, choice
