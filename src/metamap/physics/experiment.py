"""Few-shot trajectory prediction and parameter identification on one physical system.

From K noisy, irregular observations of a new system each method predicts
the trajectory on the dense grid (scored by MSE against the noise-free
truth) and, where it can, the physical parameters (relative error
|p_hat - p| / |p|, averaged over the parameters).

Methods, all with the same MLP (n_in-64-64-n_out, ReLU):

- ``maml`` / ``metasgd``: meta-trained on the meta-train systems (5 inner SGD
  steps, lr 0.05); the one with the lower meta-val MSE is reported as "best";
  parameters from a head mapping the adapted network's predictions at 50
  fixed probe inputs to the parameters (ridge regression or 5-nearest
  neighbours, fitted on meta-train tasks, chosen on meta-val tasks);
- ``pretrain_finetune``: one network trained on pooled meta-train systems,
  fine-tuned on the support with Adam (steps and rate chosen on meta-val);
- ``scratch``: a freshly initialised network fitted to the K points (Adam,
  steps and rate chosen on meta-val);
- ``least_squares``: the known equation fitted by multi-start least squares
  (:mod:`metamap.physics.fit`), its trajectory simulated on the grid;
- ``hybrid``: amortized identification refined by the known equation: the
  best meta-learner's probe head proposes the parameters from the K
  observations, and one least-squares fit starts there. Function
  evaluations (simulations, finite-difference Jacobians included) and wall
  time are recorded for it and for ``least_squares``.

Adaptation settings (all network methods) are chosen on the meta-val systems
from :data:`GRIDS` (the benchmark: :data:`WIDE_GRIDS`); the result records
each grid, the chosen setting and the keys whose chosen value lies at an edge.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
import torch
from sklearn.base import RegressorMixin
from sklearn.linear_model import RidgeCV
from sklearn.neighbors import KNeighborsRegressor

from metamap.errors import ConfigError
from metamap.experiment import Choice, Settings, ValidationTask, choose_on_validation
from metamap.learners import make_learner
from metamap.learners.base import AdaptOptions, MetaLearner
from metamap.learners.finetune import fit_per_task
from metamap.nn import MLP
from metamap.nn.devices import module_device
from metamap.physics.family import SystemFamily, SystemTasks, grid_points, model_inputs
from metamap.physics.fit import fit_from_starts
from metamap.physics.systems import System
from metamap.progress import progress_bar
from metamap.report import mean_ci95
from metamap.seeding import seeded
from metamap.tasks.episode import Episode
from metamap.tasks.family import make_generator
from metamap.training import TrainConfig
from metamap.training.retry import meta_train_lowering_inner_lr

META_LEARNERS = ("maml", "metasgd")


class TuningGrids(NamedTuple):
    """The candidate adaptation settings chosen from on meta-val: the meta-learners' SGD steps (at their inner
    rate; 0: the meta-learned network as it is) and the per-task Adam fits' steps and rates."""

    meta: list[Settings]
    adam: dict[str, list[Settings]]


# what `metamap physics run` tries; each run records which chosen values sit at an edge (``tuning_on_val``)
GRIDS = TuningGrids(
    meta=[{"steps": s} for s in (0, 1, 5, 25, 100, 300, 1000)],
    adam={
        "pretrain_finetune": [
            {"steps": steps, "lr": lr} for lr in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2) for steps in (10, 50, 200, 1000)
        ],
        "scratch": [{"steps": steps, "lr": lr} for lr in (3e-3, 1e-2, 3e-2) for steps in (30, 100, 300, 1000, 3000)],
    },
)
# the benchmark's, widened until (nearly) every choice is interior: the baselines improve up to 3000 Adam steps
WIDE_GRIDS = TuningGrids(
    meta=[{"steps": s} for s in (0, 1, 5, 25, 100, 300, 1000, 3000, 10000)],
    adam={
        "pretrain_finetune": [
            {"steps": steps, "lr": lr}
            for lr in (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
            for steps in (10, 50, 200, 1000, 3000, 10000)
        ],
        "scratch": [
            {"steps": steps, "lr": lr}
            for lr in (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
            for steps in (30, 100, 300, 1000, 3000, 10000, 30000)
        ],
    },
)
ADAM_METHODS = tuple(GRIDS.adam)  # the methods fitted per task by Adam (from the pretrained or a fresh network)
N_PROBES = 50


def new_model(system: System, seed: int) -> MLP:
    with seeded(seed):
        return MLP(system.n_in, [64, 64], system.n_out)


def train_learners(
    family: SystemTasks, names: Sequence[str], steps: int, seed: int, device: torch.device | str = "cpu"
) -> dict[str, MetaLearner]:
    """Meta-train each of ``names`` and ``pretrain`` on the family's meta-train systems, on ``device``.

    Inner rate 0.05; a learner whose meta-loss turns NaN is trained again from scratch at 0.02, then 0.01
    (the rate used is ``learner.inner_lr``).
    """
    config = TrainConfig(
        steps=steps, meta_batch=16, lr=1e-3, seed=seed, checkpoint_every=0, grad_clip=1.0, progress=False
    )
    learners = {}
    for name in (*names, "pretrain"):

        def build(inner_lr: float, name: str = name) -> MetaLearner:
            return make_learner(name, new_model(family.system, seed), inner_steps=5, inner_lr=inner_lr).to(device)

        learners[name] = meta_train_lowering_inner_lr(build, family, config, label=f"{family.system.name} {name}")
    return learners


class NetworkMethod:
    """A network method adapted to support tensors ``x [T, K, n_in]``, ``y [T, K, n_out]``.

    A meta-learner adapts by ``steps`` SGD steps at its inner rate;
    ``pretrain_finetune`` (from the pretrained network) and ``scratch`` (from
    one fresh network initialised from ``seed``) by a per-task Adam fit of
    ``steps`` at rate ``lr``. ``predict(x [T, G, n_in]) -> [T, G, n_out]``.
    """

    def __init__(self, name: str, learners: dict[str, MetaLearner], seed: int) -> None:
        self.name = name
        self.learners = learners
        self.seed = seed

    def fit(self, source: Any) -> None:
        """Trained beforehand by :func:`train_learners`."""

    def adapt(self, support: tuple[torch.Tensor, torch.Tensor], *, steps: int, lr: float | None = None) -> None:
        device = module_device(self.learners["pretrain"])
        x_support, y_support = (tensor.to(device) for tensor in support)
        if self.name not in ADAM_METHODS:
            self.adapted = self.learners[self.name].adapt(x_support, y_support, options=AdaptOptions(steps=steps))
            return
        if lr is None:
            raise ConfigError(f"{self.name} needs a learning rate (lr)")
        learner = self.learners["pretrain"]
        if self.name == "scratch":
            with seeded(self.seed):
                network = MLP(learner.model.in_features, [64, 64], learner.model.out_features)
            learner = make_learner("pretrain", network).to(device)
        self.adapted = fit_per_task(
            learner, dict(learner.model.named_parameters()), x_support, y_support, None, steps=steps, lr=lr
        )

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predictions on the CPU; the network runs where the learners live."""
        with torch.no_grad():
            return self.adapted.predict(x.to(module_device(self.learners["pretrain"]))).cpu()


def predict_dense(method: NetworkMethod, episode: Episode, settings: Settings) -> torch.Tensor:
    """``[T, G, n_out]`` predictions of ``method`` adapted with ``settings`` on the episode's (dense) query inputs."""
    method.adapt((episode.x_support, episode.y_support), **settings)
    return method.predict(episode.x_query)


def dense_mse(pred: torch.Tensor, truth: torch.Tensor) -> np.ndarray:
    """Per-task MSE ``[T]`` over the grid and outputs."""
    return ((pred - truth) ** 2).mean((1, 2)).numpy()


def choose_steps(
    family: SystemTasks,
    learners: dict[str, MetaLearner],
    n_tasks: int,
    seed: int,
    methods: Sequence[str] | None = None,
    grids: TuningGrids = GRIDS,
) -> dict[str, Choice]:
    """Adaptation settings per network method, by mean dense MSE on meta-val systems, with every candidate's MSE.

    ``methods``: only these (default: every meta-learner of ``learners``, ``pretrain_finetune`` and ``scratch``);
    ``grids``: the candidates.
    """
    episode = family.split("val").sample(n_tasks, make_generator(seed))
    candidates: dict[str, list[Settings]] = {name: grids.meta for name in learners if name != "pretrain"}
    candidates.update(grids.adam)
    if methods is not None:
        candidates = {name: candidates[name] for name in methods}
    validation = [ValidationTask((episode.x_support, episode.y_support), episode.x_query, episode.y_query)]
    return {
        name: choose_on_validation(
            NetworkMethod(name, learners, seed),
            settings,
            validation,
            lambda predictions, truths: float(np.mean(dense_mse(predictions[0], truths[0]))),
            name=f"{family.system.name} {name}",
        )
        for name, settings in candidates.items()
    }


def _finite_or_inf(value: float) -> float:
    """A diverged parameter head (NaN/inf error) scores +inf, so that it is never chosen."""
    return float(value) if np.isfinite(value) else float("inf")


def probe_inputs(family: SystemFamily) -> torch.Tensor:
    """``[N_PROBES, n_in]`` fixed inputs at which the adapted network is read by the parameter head."""
    t, x = grid_points(family.system)
    index = np.linspace(0, t.size - 1, N_PROBES).round().astype(int)
    return torch.as_tensor(model_inputs(family.system, t[index], None if x is None else x[index]))


def fit_parameter_head(
    family: SystemFamily, learner: MetaLearner, steps: int, n_tasks: int, seed: int
) -> tuple[str, RegressorMixin]:
    """A head from the adapted network's probe predictions to the parameters, fitted on meta-train tasks.

    Two candidates, ridge regression (RidgeCV) and distance-weighted 5-nearest neighbours among the
    meta-train tasks; the one with the lower relative error on meta-val tasks is returned with its name.
    """
    train = family.split("train").sample(n_tasks, make_generator(seed))
    val = family.split("val").sample(max(n_tasks // 4, 10), make_generator(seed + 1))
    features, params = probe_features(family, learner, train, steps), train.meta["params"].numpy()
    finite = np.isfinite(features).all(1)  # a task whose adaptation diverged teaches the head nothing
    features, params = features[finite], params[finite]
    val_features = probe_features(family, learner, val, steps)
    heads = {
        "ridge": RidgeCV(alphas=np.logspace(-4, 2, 13)).fit(features, params),
        "knn": KNeighborsRegressor(5, weights="distance").fit(features, params),
    }
    errors = {
        name: _finite_or_inf(
            np.mean(relative_error(predict_parameters(head, val_features, params.shape[1]), val.meta["params"].numpy()))
        )
        for name, head in heads.items()
    }
    best = min(errors, key=errors.get)
    return best, heads[best]


def probe_features(family: SystemFamily, learner: MetaLearner, episode: Episode, steps: int) -> np.ndarray:
    """The adapted network's predictions at the probe inputs, ``[T, N_PROBES * n_out]`` (may hold NaN)."""
    device = module_device(learner)
    probes = probe_inputs(family).expand(episode.n_tasks, -1, -1).to(device)
    with torch.no_grad():
        options = AdaptOptions(steps=steps)
        adapted = learner.adapt(episode.x_support.to(device), episode.y_support.to(device), options=options)
        return adapted.predict(probes).flatten(1).cpu().numpy()


def predict_parameters(head: RegressorMixin, features: np.ndarray, n_params: int) -> np.ndarray:
    """Head estimates ``[T, P]``; NaN for a task whose adapted network diverged."""
    finite = np.isfinite(features).all(1)
    estimates = np.full((features.shape[0], n_params), np.nan)
    if finite.any():
        estimates[finite] = np.asarray(head.predict(features[finite])).reshape(-1, n_params)
    return estimates


def relative_error(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-task mean over parameters of ``|estimate - truth| / |truth|``: ``[T]``."""
    return np.mean(np.abs(estimate - truth) / np.abs(truth), axis=1)


def run_system(
    system: System,
    *,
    k_shot: int = 10,
    noise: float = 0.05,
    steps: int = 2000,
    test_tasks: int = 60,
    val_tasks: int = 50,
    head_tasks: int = 500,
    n_systems: int = 1000,
    ls_starts: int = 4,
    seed: int = 0,
    learner_names: Sequence[str] = META_LEARNERS,
    progress: bool = True,
    device: torch.device | str = "cpu",
    grids: TuningGrids = GRIDS,
) -> dict[str, Any]:
    """The full comparison on one system, the networks on ``device``, every adaptation setting chosen from
    ``grids`` on meta-val; returns a JSON-able result (and ``"examples"`` for plots)."""
    family = SystemFamily(
        system,
        k_shot=k_shot,
        n_query=30,
        noise=noise,
        seed=seed,
        n_systems={"train": n_systems, "val": max(val_tasks, 20), "test": max(test_tasks, 20)},
    )
    learners = train_learners(family, learner_names, steps, seed, device)
    dense = replace(family, dense=True)  # same banks; queries = the whole noise-free grid
    chosen = choose_steps(dense, learners, val_tasks, seed + 1, grids=grids)
    choices = {name: choice.settings for name, choice in chosen.items()}
    val_mse = {name: choice.score for name, choice in chosen.items()}
    best = min(learner_names, key=val_mse.__getitem__)
    heads = {
        name: fit_parameter_head(family, learners[name], choices[name]["steps"], head_tasks, seed + 2)
        for name in learner_names
    }
    episode = dense.split("test").sample(test_tasks, make_generator(seed + 3))
    truth_params = episode.meta["params"].numpy()
    mse: dict[str, np.ndarray] = {}
    predictions: dict[str, torch.Tensor] = {}
    for method in (*learner_names, "pretrain_finetune", "scratch"):
        predictions[method] = predict_dense(NetworkMethod(method, learners, seed), episode, choices[method])
        mse[method] = dense_mse(predictions[method], episode.y_query)
    started = time.perf_counter()
    estimates = {
        name: predict_parameters(
            heads[name][1],
            probe_features(family, learners[name], episode, choices[name]["steps"]),
            truth_params.shape[1],
        )
        for name in learner_names
    }
    proposal_seconds = (time.perf_counter() - started) / len(learner_names)
    param_error = {name: relative_error(estimates[name], truth_params) for name in learner_names}
    starts = np.stack([system.sample(ls_starts, np.random.default_rng(seed + task)) for task in range(test_tasks)])
    fits = {"least_squares": least_squares_tasks(system, episode, starts, progress)}
    # the hybrid: one least-squares start at the proposal (a random start where the adapted network diverged)
    proposals = np.where(np.isfinite(estimates[best]), estimates[best], starts[:, 0])
    fits["hybrid"] = least_squares_tasks(system, episode, proposals[:, None], progress)
    fits["hybrid"].seconds += proposal_seconds
    for name, fitted in fits.items():
        predictions[name] = torch.as_tensor(fitted.trajectories, dtype=torch.float32)
        mse[name] = dense_mse(predictions[name], episode.y_query)
        param_error[name] = relative_error(fitted.params, truth_params)
    return {
        "system": system.name,
        "parameters": list(system.names),
        "ranges": [list(r) for r in system.ranges],
        "k_shot": k_shot,
        "noise_std": noise,
        "test_tasks": test_tasks,
        "inner_lr": {n: learner.inner_lr for n, learner in learners.items()},
        "steps_chosen_on_val": choices,
        "parameter_heads_chosen_on_val": {n: h[0] for n, h in heads.items()},
        "val_mse": val_mse,
        "tried_on_val": {name: choice.to_json()["tried"] for name, choice in chosen.items()},
        "tuning_on_val": {name: tuning_record(choice) for name, choice in chosen.items()},
        "best_meta_learner_on_val": best,
        "mse": {m: summarize(v) for m, v in mse.items()},
        "param_rel_error": {m: summarize(v) for m, v in param_error.items()},
        "least_squares_wins_mse_vs_best": float(np.mean(mse["least_squares"] < mse[best])),
        "hybrid_proposals_from": best,
        "function_evaluations": {name: summarize(fitted.evaluations) for name, fitted in fits.items()},
        "fit_seconds": {name: fitted.seconds for name, fitted in fits.items()},
        "examples": {
            "x_support": episode.x_support[:1].tolist(),
            "y_support": episode.y_support[:1].tolist(),
            "x_query": episode.x_query[:1].tolist(),
            "truth": episode.y_query[:1].tolist(),
            "predictions": {m: p[:1].tolist() for m, p in predictions.items()},
        },
    }


def tuning_record(choice: Choice) -> dict[str, Any]:
    """``{"grid": {key: values}, "chosen": settings, "at_edge": [keys], "scores": [[settings, score], ...]}``:
    the grid, the choice, the keys whose chosen value sits at an edge, and every candidate's validation score."""
    return {
        "grid": choice.grid,
        "chosen": choice.settings,
        "at_edge": list(choice.at_edge),
        "scores": [[settings, score] for settings, score in choice.tried],
    }


@dataclass
class TaskFits:
    """Least-squares fits of a test episode: ``params [T, P]``, dense ``trajectories [T, G, n_out]``,
    ``evaluations [T]`` (simulations of the equation per task) and the total wall time ``seconds``."""

    params: np.ndarray
    trajectories: np.ndarray
    evaluations: np.ndarray
    seconds: float


def least_squares_tasks(system: System, episode: Episode, starts: np.ndarray, progress: bool) -> TaskFits:
    """``system``'s equation fitted to each task's support from its ``starts [T, S, P]`` (the best of S fits);
    the episode's ``meta["support_index"]`` locates the support on ``system``'s grid."""
    t, x = grid_points(system)
    params, trajectories, evaluations = [], [], []
    started = time.perf_counter()
    for task in progress_bar(range(episode.n_tasks), enabled=progress, desc=f"least squares {system.name}"):
        index = episode.meta["support_index"][task].numpy()
        fitted, calls = fit_from_starts(
            system, t[index], episode.y_support[task].numpy(), None if x is None else x[index], starts[task]
        )
        params.append(fitted)
        evaluations.append(calls)
        trajectories.append(system.simulate(fitted, t, x))
    seconds = time.perf_counter() - started
    return TaskFits(np.stack(params), np.stack(trajectories), np.array(evaluations, dtype=np.float64), seconds)


def summarize(values: np.ndarray) -> dict[str, float]:
    """Mean, 95% CI and median over tasks, and how many tasks diverged (their NaN/inf make the mean inf)."""
    diverged = int((~np.isfinite(values)).sum())
    if diverged:
        return {"mean": float("inf"), "ci95": float("nan"), "median": float(np.median(values)), "diverged": diverged}
    mean, ci = mean_ci95(values)
    return {"mean": mean, "ci95": ci, "median": float(np.median(values)), "diverged": 0}
