"""One comparison: meta-train on source sensors, adapt to target sensors, score every method.

Methods (the issue's table): the meta-learners ``maml``, ``fomaml``,
``reptile``, ``metasgd``, ``anil``; the baselines ``persistence`` (last
value), ``historical_average`` (the target's own support readings by time of
day), ``target_only`` (the same network trained from scratch on the target's
support windows), ``target_only_linear`` (per-sensor ridge regression on the
same inputs), ``pretrain`` (one network trained on all source windows, no
adaptation) and ``pretrain_finetune`` (that network fine-tuned per target
sensor).

Adaptation settings (inner steps for the meta-learners; Adam steps and rate
for fine-tuning and target-only training; the ridge penalty) are chosen per
method on *validation* source sensors (support = the last support block of
the training period, query = the rest of it), never on the targets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from metamap.errors import ConfigError
from metamap.learners import make_learner
from metamap.learners.finetune import fit_per_task
from metamap.nn import MLP
from metamap.report import format_table
from metamap.seeding import seeded
from metamap.traffic.baselines import historical_average, persistence
from metamap.traffic.family import SensorTasks
from metamap.traffic.features import SeriesFeatures
from metamap.traffic.linear import fit_ridge, predict_ridge
from metamap.traffic.metrics import errors_by_step, horizon_errors, masked_errors
from metamap.training import TrainConfig, meta_train

META_METHODS = ("maml", "fomaml", "reptile", "metasgd", "anil")
BASELINES = (
    "persistence",
    "historical_average",
    "target_only",
    "target_only_linear",
    "pretrain",
    "pretrain_finetune",
)
METHODS = META_METHODS + BASELINES
MODELS = {"node": 0, "graph": 2}  # diffusion hops of the inputs: per-node model, graph-aware model


@dataclass(frozen=True)
class ExperimentConfig:
    """How every learned method is trained (the same network for all).

    ``model``: ``"node"`` (MLP on a sensor's own hour) or ``"graph"`` (MLP on
    the hour diffused over the road graph, 2 hops each way: a diffusion
    convolution layer followed by a per-node network).
    """

    model: str = "graph"
    hidden: tuple[int, ...] = (64, 64)
    steps: int = 1000
    meta_batch: int = 16
    lr: float = 1e-3
    inner_steps: int = 5
    inner_lr: float = 0.05
    n_support: int = 48
    n_query: int = 48
    support_steps: int = 288
    methods: tuple[str, ...] = METHODS
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ConfigError(f"unknown traffic model {self.model!r}; expected one of {', '.join(MODELS)}")
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ConfigError(f"unknown method(s) {unknown}; expected some of {', '.join(METHODS)}")

    @property
    def hops(self) -> int:
        return MODELS[self.model]


@dataclass(frozen=True)
class Target:
    """Sensors to forecast: ``nodes [n]`` of ``features``, adapting on steps ``support``, scored on ``test``.

    Its windows are built once and kept: every method and every candidate
    setting reads the same ones.
    """

    features: SeriesFeatures
    nodes: torch.Tensor
    support: tuple[int, int]
    test: tuple[int, int]

    @cached_property
    def support_set(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x [n, S, F]``, ``y [n, S, 12]``, ``mask [n, S, 12]`` of the support period."""
        return self.features.windows(self.nodes, self.features.origins(*self.support))

    @cached_property
    def test_origins(self) -> torch.Tensor:
        return self.features.origins(*self.test, inputs_inside=False)

    @cached_property
    def test_inputs(self) -> torch.Tensor:
        return self.features.windows(self.nodes, self.test_origins)[0]

    @cached_property
    def truth(self) -> torch.Tensor:
        """Readings at the test windows' targets, ``[n, W, 12]`` (0 = missing)."""
        return self.features.truth(self.nodes, self.test_origins)


@dataclass
class MethodResult:
    """A method's forecasts of a target (mph ``[n, W, 12]``), their errors, and its costs in seconds."""

    prediction: torch.Tensor
    errors: dict[str, dict[str, float]]
    mae_by_step: list[float]
    adapt_seconds: float
    train_seconds: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "errors": self.errors,
            "mae_by_step": self.mae_by_step,
            "adapt_seconds": self.adapt_seconds,
            "train_seconds": self.train_seconds,
            "options": self.options,
        }


def build_model(n_features: int, config: ExperimentConfig) -> MLP:
    with seeded(config.seed):
        return MLP(n_features, list(config.hidden), 12)


def method_learner(name: str, n_features: int, config: ExperimentConfig):
    """The learner trained for ``name`` (a meta-method or ``"pretrain"``) around a fresh network."""
    options = (
        {"inner_steps": 0} if name == "pretrain" else {"inner_steps": config.inner_steps, "inner_lr": config.inner_lr}
    )
    return make_learner(name, build_model(n_features, config), **options)


def train_settings(config: ExperimentConfig, progress: bool = False) -> TrainConfig:
    """How every learned method is meta-trained."""
    return TrainConfig(
        steps=config.steps,
        meta_batch=config.meta_batch,
        lr=config.lr,
        seed=config.seed,
        val_every=max(config.steps // 4, 1),
        val_tasks=32,
        progress=progress,
    )


def train_methods(family: SensorTasks, config: ExperimentConfig, progress: bool = False) -> dict[str, tuple]:
    """Meta-train each meta-learner and the pretrained network; ``{name: (learner, seconds)}``."""
    trained = {}
    names = [m for m in config.methods if m in META_METHODS]
    if {"pretrain", "pretrain_finetune"} & set(config.methods):
        names.append("pretrain")
    for name in names:
        learner = method_learner(name, family.n_features, config)
        train = train_settings(config, progress)
        if progress:
            print(f"[traffic] meta-training {name} ({config.model} model, {config.steps} steps)")
        result = meta_train(learner, family, train)
        trained[name] = (learner, result.seconds)
    return trained


def compare(
    trained: dict[str, tuple], targets: dict[str, Target], validations: dict[str, Target], config: ExperimentConfig
) -> dict[str, dict[str, MethodResult]]:
    """Adapt every method to each target; ``{target_name: {method: MethodResult}}``.

    ``validations[name]`` are source sensors with a support period as long as
    target ``name``'s: the adaptation settings for that target are chosen there.
    """
    results: dict[str, dict[str, MethodResult]] = {name: {} for name in targets}
    for method in config.methods:
        learner, train_seconds = trained.get("pretrain" if method.startswith("pretrain") else method, (None, 0.0))
        n_features = next(iter(targets.values())).features.n_features
        forecaster = _forecaster(method, learner, config, n_features)
        for name, target in targets.items():
            options = _choose(forecaster, method, validations[name])
            results[name][method] = score(forecaster, target, options, train_seconds)
    return results


def score(forecaster: Forecaster, target: Target, options: dict[str, Any], train_seconds: float = 0.0) -> MethodResult:
    """Forecast ``target`` with ``options``, timing the adaptation, and score it against the readings."""
    start = time.perf_counter()
    prediction = forecaster(target, options)
    seconds = time.perf_counter() - start
    return MethodResult(
        prediction,
        horizon_errors(prediction, target.truth),
        errors_by_step(prediction, target.truth),
        seconds,
        train_seconds,
        options,
    )


HORIZONS = ("15min", "30min", "60min")
TABLE_HEADER = [
    "method",
    "MAE 15",
    "MAE 30",
    "MAE 60",
    "RMSE 15",
    "RMSE 30",
    "RMSE 60",
    "MAPE 15 %",
    "MAPE 30 %",
    "MAPE 60 %",
    "adapt s",
]


def results_table(results: dict[str, MethodResult], prefix: str = "") -> str:
    """The methods' masked MAE / RMSE / MAPE at 15 / 30 / 60 min, best MAE at 60 min first."""
    rows = []
    for method, result in sorted(results.items(), key=lambda kv: kv[1].errors["60min"]["mae"]):
        e = result.errors
        rows.append(
            [
                f"{prefix}{method}",
                *(e[h]["mae"] for h in HORIZONS),
                *(e[h]["rmse"] for h in HORIZONS),
                *(e[h]["mape"] for h in HORIZONS),
                result.adapt_seconds,
            ]
        )
    return format_table(TABLE_HEADER, rows)


Forecaster = Callable[[Target, dict[str, Any]], torch.Tensor]

# Candidate adaptation settings, chosen per method on the validation sensors.
CANDIDATES: dict[str, list[dict[str, Any]]] = {
    "meta": [{"steps": s} for s in (1, 5, 10, 20, 40)],
    "pretrain": [{}],
    "pretrain_finetune": [{"steps": s, "lr": lr} for s in (10, 30, 100) for lr in (1e-4, 3e-4, 1e-3)],
    "target_only": [{"steps": s, "lr": lr} for s in (30, 100, 300, 1000) for lr in (1e-3, 3e-3)],
    "target_only_linear": [{"penalty": p} for p in (1.0, 10.0, 100.0, 1000.0, 10000.0)],
    "persistence": [{}],
    "historical_average": [{}],
}


def _choose(forecaster: Forecaster, method: str, validation: Target) -> dict[str, Any]:
    candidates = CANDIDATES["meta" if method in META_METHODS else method]
    if len(candidates) == 1:
        return candidates[0]
    return min(candidates, key=lambda options: masked_errors(forecaster(validation, options), validation.truth)["mae"])


def _forecaster(method: str, learner, config: ExperimentConfig, n_features: int) -> Forecaster:
    """A function ``(target, options) -> forecasts in mph [n, W, 12]`` for ``method``."""
    if method == "persistence":
        return lambda t, o: persistence(t.features, t.nodes, t.test_origins)
    if method == "historical_average":
        return lambda t, o: historical_average(t.features, t.nodes, t.support, t.test_origins)
    if method == "target_only_linear":

        def ridge(t: Target, o: dict[str, Any]) -> torch.Tensor:
            weights = fit_ridge(*t.support_set, o["penalty"])
            return t.features.scaler.inverse(predict_ridge(weights, t.test_inputs))

        return ridge
    if method == "target_only":
        learner = make_learner("pretrain", build_model(n_features, config), inner_steps=0)
    if method in ("target_only", "pretrain_finetune"):

        def fitted(t: Target, o: dict[str, Any]) -> torch.Tensor:
            adapted = fit_per_task(learner, learner.meta_params(), *t.support_set, steps=o["steps"], lr=o["lr"])
            return _predict(adapted, t)

        return fitted
    return lambda t, o: _predict(learner.adapt(*t.support_set, steps=o.get("steps", 0)), t)


def _predict(adapted, target: Target) -> torch.Tensor:
    with torch.no_grad():
        return target.features.scaler.inverse(adapted.predict(target.test_inputs))
