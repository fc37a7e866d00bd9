"""One comparison: meta-train on source sensors, adapt to target sensors, score every method.

Methods: the meta-learners ``maml``, ``fomaml``,
``reptile``, ``metasgd``, ``anil``; the baselines ``persistence`` (last
value), ``seasonal_naive_day`` / ``seasonal_naive_week`` /
``seasonal_naive_daytype`` (the reading one day / one week before each
target / on the last earlier day of the same kind, weekday or weekend),
``profile_day`` / ``profile_week`` (the sensor's mean reading at the target's
time of day over the last week / time of week over the last four weeks, from
readings up to the origin), ``historical_average`` /
``historical_average_week`` (the target's own support readings by time of day /
of week), ``target_only`` (the same network trained from scratch on the target's
support windows), ``target_only_linear`` (per-sensor ridge regression on the
same inputs), ``pretrain`` (one network trained on all source windows, no
adaptation) and ``pretrain_finetune`` (that network fine-tuned per target
sensor).

The networks (meta-learners, target-only, pretrain) and the ridge forecast
the correction to the base forecast of :class:`ExperimentConfig`, chosen
among the causal baselines on the validation sensors (:func:`choose_base`).

Adaptation settings (inner steps for the meta-learners; Adam steps and rate
for fine-tuning and target-only training; the ridge penalty) are chosen per
method on *validation* source sensors (support = the last support block of
the training period, query = the rest of it), never on the targets, by
:func:`metamap.experiment.choose_on_validation`: every method here is a
:class:`metamap.experiment.Method` adapting to a :class:`Target`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from metamap.errors import ConfigError
from metamap.experiment import Choice, Method, ResultTable, Settings, ValidationTask, choose_on_validation
from metamap.experiment.guard import guard
from metamap.learners import AdaptOptions, make_learner
from metamap.learners.finetune import fit_per_task
from metamap.nn import MLP
from metamap.nn.devices import module_device
from metamap.seeding import seeded
from metamap.traffic.baselines import historical_average, historical_average_week
from metamap.traffic.family import SensorTasks
from metamap.traffic.features import BASES, SeriesFeatures, Windows
from metamap.traffic.linear import fit_ridge, predict_ridge
from metamap.traffic.metrics import errors_by_step, horizon_errors, masked_mae
from metamap.training import TrainConfig, meta_train

META_METHODS = ("maml", "fomaml", "reptile", "metasgd", "anil")
SIMPLE_BASELINES = (  # nothing to train or choose: every table and every applied run shows them
    *BASES,
    "historical_average",
    "historical_average_week",
)
BASELINES = (
    *SIMPLE_BASELINES,
    "target_only",
    "target_only_linear",
    "pretrain",
    "pretrain_finetune",
)
METHODS = META_METHODS + BASELINES
MODELS = {"node": 0, "graph": 2}  # diffusion hops of the inputs: per-node model, graph-aware model
AUTO = "auto"  # the base forecast: the best of BASES on the validation sensors


@dataclass(frozen=True)
class ExperimentConfig:
    """How every learned method is trained (the same network for all).

    ``model``: ``"node"`` (MLP on a sensor's own recent readings) or
    ``"graph"`` (MLP on them diffused over the road graph, 2 hops each way: a
    diffusion convolution layer followed by a per-node network).

    ``history`` and ``horizons`` are in steps of the data; ``seasonal`` adds
    the readings a day and a week before each target to the inputs and
    ``profiles`` the sensor's profiles by time of day and of week; ``base``
    is the classical forecast the networks correct (a key of
    :data:`~metamap.traffic.features.BASES`, ``"auto"`` = the best of them on
    the validation sensors, or None to forecast the readings themselves);
    ``nonnegative`` clips learned forecasts at 0; ``support_steps`` is the
    length of the readings each sensor adapts on (a day of 5-minute steps by
    default), in meta-training tasks and in the protocols.
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
    history: int = 12
    horizons: tuple[int, ...] = (3, 6, 12)
    seasonal: bool = True
    base: str | None = AUTO
    nonnegative: bool = False
    profiles: bool = False
    methods: tuple[str, ...] = METHODS
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ConfigError(f"unknown traffic model {self.model!r}; expected one of {', '.join(MODELS)}")
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ConfigError(f"unknown method(s) {unknown}; expected some of {', '.join(METHODS)}")
        if self.base not in (None, AUTO, *BASES):
            raise ConfigError(
                f"unknown base forecast {self.base!r}; expected {AUTO}, none or one of {', '.join(BASES)}"
            )
        _ = self.windows  # Windows checks the lengths

    @property
    def hops(self) -> int:
        return MODELS[self.model]

    @property
    def windows(self) -> Windows:
        """The window spec; an ``"auto"`` base is left out until :func:`choose_base` has chosen it."""
        base = None if self.base == AUTO else self.base
        return Windows(self.history, self.horizons, self.seasonal, base, self.nonnegative, self.profiles)


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
        """``x [n, S, F]``, ``y [n, S, horizon]``, ``mask [n, S, horizon]`` of the support period."""
        return self.features.windows(self.nodes, self.features.origins(*self.support))

    @cached_property
    def test_origins(self) -> torch.Tensor:
        return self.features.origins(*self.test, inputs_inside=False)

    @cached_property
    def test_inputs(self) -> torch.Tensor:
        return self.features.inputs(self.nodes, self.test_origins)

    @cached_property
    def truth(self) -> torch.Tensor:
        """Readings at the test windows' targets, ``[n, W, horizon]`` (0 where missing)."""
        return self.features.truth(self.nodes, self.test_origins)

    @cached_property
    def observed(self) -> torch.Tensor:
        """``bool [n, W, horizon]``: True where :attr:`truth` holds a reading."""
        return self.features.observed(self.nodes, self.test_origins)

    def readings(self, forecasts: torch.Tensor) -> torch.Tensor:
        """A network's normalized forecasts of the test windows ``[n, W, horizon]`` in the file's unit."""
        return self.features.readings(forecasts, self.nodes, self.test_origins)


@dataclass
class MethodResult:
    """A method's forecasts of a target (file's unit, ``[n, W, horizon]``), their errors, its costs in seconds,
    its settings."""

    prediction: torch.Tensor
    errors: dict[str, dict[str, float | None]]
    mae_by_step: list[float]
    adapt_seconds: float
    train_seconds: float = 0.0
    options: Settings = field(default_factory=dict)
    validation: Choice | None = None  # how ``options`` were chosen, when chosen here
    fallbacks: int = 0  # sensors the adaptation guard forecast from the unadapted network

    def summary(self) -> dict[str, Any]:
        return {
            "errors": self.errors,
            "mae_by_step": self.mae_by_step,
            "adapt_seconds": self.adapt_seconds,
            "train_seconds": self.train_seconds,
            "options": self.options,
            "validation": None if self.validation is None else self.validation.to_json(),
            "fallbacks": self.fallbacks,
        }


def require_finite(name: str, forecasts: torch.Tensor, options: Settings) -> None:
    """Refuse forecasts ``[n, ...]`` of method ``name`` (adapted with ``options``) that went non-finite."""
    bad = ~torch.isfinite(forecasts.reshape(len(forecasts), -1)).all(1)
    if bool(bad.any()):
        shown = ", ".join(f"{k}={v}" for k, v in options.items()) or "no settings"
        raise ConfigError(
            f"{name} ({shown}) diverged adapting to {int(bad.sum())} of {len(forecasts)} sensors (non-finite "
            "forecasts); pass fewer --steps, a longer --support or another method"
        )


def build_model(n_features: int, config: ExperimentConfig) -> MLP:
    with seeded(config.seed):
        return MLP(n_features, list(config.hidden), config.windows.horizon)


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


def train_methods(
    family: SensorTasks, config: ExperimentConfig, progress: bool = False, device: torch.device | str = "cpu"
) -> dict[str, tuple]:
    """Meta-train each meta-learner and the pretrained network on ``device``; ``{name: (learner, seconds)}``."""
    trained = {}
    names = [m for m in config.methods if m in META_METHODS]
    if {"pretrain", "pretrain_finetune"} & set(config.methods):
        names.append("pretrain")
    for name in names:
        learner = method_learner(name, family.n_features, config).to(device)
        train = train_settings(config, progress)
        if progress:
            print(f"[traffic] meta-training {name} ({config.model} model, {config.steps} steps)")
        result = meta_train(learner, family, train)
        trained[name] = (learner, result.seconds)
    return trained


def compare(
    trained: dict[str, tuple],
    targets: dict[str, Target],
    validations: dict[str, Target],
    config: ExperimentConfig,
    device: torch.device | str = "cpu",
) -> dict[str, dict[str, MethodResult]]:
    """Adapt every method to each target on ``device`` (where ``trained`` lives);
    ``{target_name: {method: MethodResult}}``.

    ``validations[name]`` are source sensors with a support period as long as
    target ``name``'s: the adaptation settings for that target are chosen there.
    """
    results: dict[str, dict[str, MethodResult]] = {name: {} for name in targets}
    for name in config.methods:
        learner, train_seconds = trained.get("pretrain" if name.startswith("pretrain") else name, (None, 0.0))
        n_features = next(iter(targets.values())).features.n_features
        method = make_method(name, learner, config, n_features, device)
        for target_name, target in targets.items():
            choice = choose_settings(method, name, validations[target_name])
            results[target_name][name] = score(method, target, choice.settings, train_seconds, choice)
    return results


def score(
    method: Method[Target, Target, torch.Tensor],
    target: Target,
    options: Settings,
    train_seconds: float = 0.0,
    validation: Choice | None = None,
) -> MethodResult:
    """Adapt ``method`` to ``target`` with ``options`` and forecast it, timing both, and score the forecasts.

    ``validation``: how ``options`` were chosen, kept in the result.
    """
    start = time.perf_counter()
    method.adapt(target, **options)
    prediction = method.predict(target)
    seconds = time.perf_counter() - start
    features = target.features
    return MethodResult(
        prediction,
        horizon_errors(prediction, target.truth, target.observed, features.spec, features.data.step_minutes),
        errors_by_step(prediction, target.truth, target.observed),
        seconds,
        train_seconds,
        options,
        validation,
        method.fallbacks if isinstance(method, Adapted) else 0,
    )


def results_table(results: dict[str, MethodResult], prefix: str = "") -> ResultTable:
    """The methods' masked MAE / RMSE / MAPE at each reported horizon and adaptation seconds, best MAE at the
    longest horizon first (MAPE left blank where readings of 0 make it meaningless)."""
    labels = list(next(iter(results.values())).errors)
    metrics = tuple(f"{metric} {label}" for metric in ("MAE", "RMSE", "MAPE %") for label in labels)
    table = ResultTable((*metrics, "adapt s"))
    for method, result in results.items():
        values = {
            f"{metric} {label}": value
            for metric, key in (("MAE", "mae"), ("RMSE", "rmse"), ("MAPE %", "mape"))
            for label in labels
            if (value := result.errors[label][key]) is not None
        }
        table.add(f"{prefix}{method}", {**values, "adapt s": result.adapt_seconds})
    return table.sorted_by(f"MAE {labels[-1]}")


# Candidate adaptation settings, chosen per method on the validation sensors (cheapest first).
META_CANDIDATES: list[Settings] = [{"steps": s} for s in (1, 5, 10, 20, 40)]
CANDIDATES: dict[str, list[Settings]] = {
    **{method: META_CANDIDATES for method in META_METHODS},
    "pretrain": [{}],
    "pretrain_finetune": [{"steps": s, "lr": lr} for s in (10, 30, 100) for lr in (1e-4, 3e-4, 1e-3)],
    "target_only": [{"steps": s, "lr": lr} for s in (30, 100, 300, 1000) for lr in (1e-3, 3e-3)],
    "target_only_linear": [{"penalty": p} for p in (1.0, 10.0, 100.0, 1000.0, 10000.0)],
    **{method: [{}] for method in SIMPLE_BASELINES},
}


class HistoricalAverage:
    """Each sensor's own support readings averaged by time of day, at the test windows' targets."""

    def fit(self, source: Any) -> None:
        """Learns nothing."""

    def adapt(self, support: Target) -> None:
        self.support = support.support

    def predict(self, x: Target) -> torch.Tensor:
        return historical_average(x.features, x.nodes, self.support, x.test_origins)


class HistoricalAverageWeek:
    """Each sensor's own support readings averaged by time of week (time of day where a slot is unseen)."""

    def fit(self, source: Any) -> None:
        """Learns nothing."""

    def adapt(self, support: Target) -> None:
        self.support = support.support

    def predict(self, x: Target) -> torch.Tensor:
        return historical_average_week(x.features, x.nodes, self.support, x.test_origins)


class Ridge:
    """Per-sensor ridge regression on the support windows (``penalty``: the ridge penalty)."""

    def fit(self, source: Any) -> None:
        """Learns nothing."""

    def adapt(self, support: Target, *, penalty: float) -> None:
        self.weights = fit_ridge(*support.support_set, penalty)

    def predict(self, x: Target) -> torch.Tensor:
        return x.readings(predict_ridge(self.weights, x.test_inputs))


class Adapted:
    """A trained learner adapted to the support windows: meta-learners by their inner ``steps``,
    ``fine_tune`` learners by a per-sensor Adam fit (``steps`` at rate ``lr``) from the learner's weights.

    Guarded (:mod:`metamap.experiment.guard`): a sensor whose adapted network fits its support worse than
    the unadapted one, or not at all, is forecast by the unadapted network; ``fallbacks`` counts them at the
    latest adaptation. ``fit`` is done by :func:`train_methods` (the meta-training of every learner at once).
    """

    def __init__(self, learner: Any, fine_tune: bool = False) -> None:
        self.learner = learner
        self.fine_tune = fine_tune
        self.fallbacks = 0

    def fit(self, source: Any) -> None:
        """Trained beforehand by :func:`train_methods`."""

    def adapt(self, support: Target, *, steps: int = 0, lr: float | None = None) -> None:
        device = module_device(self.learner)
        support_set = tuple(tensor.to(device) for tensor in support.support_set)
        if self.fine_tune:
            if lr is None:
                raise ConfigError("fine-tuning needs a learning rate (lr)")
            adapted = fit_per_task(self.learner, self.learner.meta_params(), *support_set, steps=steps, lr=lr)
        else:
            adapted = self.learner.adapt(*support_set, options=AdaptOptions(steps=steps))
        start = self.learner.adapt(*support_set, options=AdaptOptions(steps=0))
        self.adapted = guard(start, adapted, *support_set)
        self.fallbacks = self.adapted.fallbacks

    def predict(self, x: Target) -> torch.Tensor:
        """Forecasts in the file's unit ``[n, W, horizon]`` on the CPU; the network runs where the learner lives."""
        with torch.no_grad():
            forecasts = self.adapted.predict(x.test_inputs.to(module_device(self.learner))).cpu()
        return x.readings(forecasts)


def make_method(
    name: str, learner: Any, config: ExperimentConfig, n_features: int, device: torch.device | str = "cpu"
) -> Method[Target, Target, torch.Tensor]:
    """The method ``name`` (a key of :data:`CANDIDATES`) around its trained ``learner`` (None for baselines).

    ``target_only`` gets a fresh network (initialised from ``config.seed``) on ``device`` to fine-tune from.
    """
    if name in BASES:
        return CausalForecast(name)
    if name == "historical_average":
        return HistoricalAverage()
    if name == "historical_average_week":
        return HistoricalAverageWeek()
    if name == "target_only_linear":
        return Ridge()
    if name == "target_only":
        fresh = make_learner("pretrain", build_model(n_features, config), inner_steps=0).to(device)
        return Adapted(fresh, fine_tune=True)
    return Adapted(learner, fine_tune=name == "pretrain_finetune")


def choose_settings(method: Method[Target, Target, torch.Tensor], name: str, validation: Target) -> Choice:
    """The adaptation settings of method ``name`` with the lowest masked MAE on the ``validation`` sensors."""
    return choose_on_validation(
        method,
        CANDIDATES[name],
        [ValidationTask(validation, validation, validation.truth)],
        lambda predictions, truths: masked_mae(predictions[0], truths[0], validation.observed),
        name=name,
    )


class CausalForecast:
    """One of the forecasts of :data:`~metamap.traffic.features.BASES` from readings up to each origin:
    persistence, or the reading one day or week before each target (persistence where there is none).

    ``base`` names it; the setting ``base`` of :meth:`adapt`, where given, replaces it (to choose one).
    """

    def __init__(self, base: str | None = None) -> None:
        self.base = base

    def fit(self, source: Any) -> None:
        """Learns nothing."""

    def adapt(self, support: Target, *, base: str | None = None) -> None:
        """Needs no support: the lagged readings come from the series itself."""
        self.base = base or self.base

    def predict(self, x: Target) -> torch.Tensor:
        if self.base is None:
            raise ConfigError("CausalForecast: no base forecast named")
        return x.features.forecast(self.base, x.nodes, x.test_origins)


def choose_base(validation: Target) -> Choice:
    """The base forecast (a key of ``BASES``) with the lowest masked MAE over every forecast step of the
    ``validation`` sensors: the classical forecast the networks then learn to correct."""
    observed = validation.observed
    return choose_on_validation(
        CausalForecast(),
        [{"base": name} for name in BASES],
        [ValidationTask(validation, validation, validation.truth)],
        lambda predictions, truths: masked_mae(predictions[0], truths[0], observed),
        name="base forecast",
    )
