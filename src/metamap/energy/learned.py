"""The learned mapping loads -> dispatch, and regimes as few-shot tasks.

:class:`DispatchModel` is an MLP on standardized loads that outputs
standardized dispatches; the standardization (per load and per generator mean
and spread) comes from its training scenarios only. Its last layer on a case
(:meth:`DispatchModel.predict_complete`) is the completion
:func:`metamap.energy.feasibility.complete`: the network's dispatch projected
onto the power balance and the generator limits, each unit weighted by its
training spread. What it produces still goes through
:func:`metamap.energy.feasibility.guaranteed_dispatch`, which checks the line
limits and repairs or replaces what fails.

A *regime* (a season and time-of-day window of the load profiles, and
optionally a branch out of service) is a task; its solved scenarios are the
examples. :func:`regime_episode` stacks regimes into an
:class:`~metamap.tasks.episode.Episode` (``x [T, S, n_load]`` standardized
loads, ``y [T, S, n_gen]`` standardized dispatches) for the foundation's
learners (``make_learner("maml" | "metasgd" | "reptile", model)``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from metamap.energy.dcopf import DCOPFCase
from metamap.energy.feasibility import complete
from metamap.errors import CheckpointError, DataError
from metamap.experiment import Choice, Diverged, Settings, ValidationTask, choose_on_validation
from metamap.nn import MLP
from metamap.nn.devices import module_device
from metamap.preprocessing import Standardizer
from metamap.report import write_json, write_safetensors
from metamap.seeding import seeded
from metamap.tasks.episode import Episode
from metamap.training.trainer import Trainer

FLOOR_MW = 1.0  # the smallest spread of a load or a dispatch column
SCALER_TENSORS = {"x": "loads", "y": "dispatches"}  # safetensors prefix -> what the scaler standardizes
# Fine-tuning settings a trained model is adapted with, chosen on held-out scenarios of the new regime.
FINETUNE_CANDIDATES: list[Settings] = [
    {"steps": s, "lr": lr} for s in (10, 25, 50, 100, 200, 400) for lr in (1e-4, 1e-3, 3e-3, 1e-2)
]
MIN_TO_CHOOSE = 5  # scenarios needed to hold some out for choosing the fine-tuning settings


def new_scaler(what: str) -> Standardizer:
    """An unfitted per-column standardizer of training ``what`` (MW), spreads floored at ``FLOOR_MW``."""
    return Standardizer(axis=0, floor=FLOOR_MW, name=f"training {what}")


def fit_scalers(pd: np.ndarray, pg: np.ndarray) -> tuple[Standardizer, Standardizer]:
    """Per-column standardizers of training loads ``pd [N, n_load]`` and dispatches ``pg [N, n_gen]`` (MW)."""
    return new_scaler("loads").fit(pd), new_scaler("dispatches").fit(pg)


def standardized(scaler: Standardizer, values: np.ndarray) -> torch.Tensor:
    """``values [N, n]`` in MW as standardized float32 network inputs or targets ``[N, n]``."""
    return torch.as_tensor(scaler.transform(values), dtype=torch.float32)


def in_mw(scaler: Standardizer, y: torch.Tensor) -> np.ndarray:
    """Standardized network outputs ``y [N, n_gen]`` back in MW (float64 ``[N, n_gen]``)."""
    return scaler.inverse_transform(y.detach().cpu().double().numpy())


def make_network(n_load: int, n_gen: int, hidden: tuple[int, ...] = (256, 256), seed: int = 0) -> MLP:
    """The MLP ``[N, n_load] -> [N, n_gen]`` (standardized units), initialised from ``seed``."""
    with seeded(seed):
        return MLP(n_load, list(hidden), n_gen)


class DispatchModel:
    """A trained mapping loads (MW) -> dispatch (MW): ``predict(pd [N, n_load]) -> [N, n_gen]``."""

    def __init__(self, network: MLP, loads_scaler: Standardizer, dispatch_scaler: Standardizer) -> None:
        self.network = network
        self.loads_scaler = loads_scaler
        self.dispatch_scaler = dispatch_scaler

    def predict(self, pd: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            inputs = standardized(self.loads_scaler, pd).to(module_device(self.network))
            return in_mw(self.dispatch_scaler, self.network(inputs))

    def predict_complete(self, case: DCOPFCase, pd: np.ndarray) -> np.ndarray:
        """:meth:`predict` followed by the completion layer on ``case``: dispatches ``[N, n_gen]`` MW that meet
        the balance and the generator limits for loads ``pd [N, n_load]`` whose demand the units can supply."""
        return complete(case, pd, self.predict(pd), weight=self.dispatch_scaler.scale_)

    def save(self, folder: Path, meta: dict) -> None:
        """``model.safetensors`` (weights and standardization) + ``model.json`` (``meta``, the widths)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"net.{k}": v for k, v in self.network.state_dict().items()}
        for prefix, scaler in zip(SCALER_TENSORS, (self.loads_scaler, self.dispatch_scaler), strict=True):
            tensors[f"scaler.{prefix}_mean"] = torch.as_tensor(scaler.mean_)
            tensors[f"scaler.{prefix}_scale"] = torch.as_tensor(scaler.scale_)
        write_safetensors(folder / "model.safetensors", tensors)
        hidden = [m.out_features for m in list(self.network)[:-1] if isinstance(m, torch.nn.Linear)]
        info = {**meta, "hidden": hidden, "n_load": self.network.in_features, "n_gen": self.network.out_features}
        write_json(folder / "model.json", info)

    @classmethod
    def load(cls, folder: Path, device: torch.device | str = "cpu") -> tuple[DispatchModel, dict]:
        """Inverse of :meth:`save`, the network on ``device``; CheckpointError when the files are missing or do
        not match."""
        folder = Path(folder)
        try:
            info = json.loads((folder / "model.json").read_text())
            tensors = load_file(str(folder / "model.safetensors"))
            network = MLP(info["n_load"], info["hidden"], info["n_gen"])
            network.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
            loads_scaler, dispatch_scaler = (
                Standardizer.from_state_dict(
                    {
                        **new_scaler(what).get_params(),
                        "mean": tensors[f"scaler.{prefix}_mean"].numpy(),
                        "scale": tensors[f"scaler.{prefix}_scale"].numpy(),
                    }
                )
                for prefix, what in SCALER_TENSORS.items()
            )
        except (OSError, KeyError, ValueError, RuntimeError, CheckpointError) as exc:
            raise CheckpointError(f"{folder}: not a readable energy model ({exc})") from None
        return cls(network.to(device), loads_scaler, dispatch_scaler), info


def fit_network(
    network: MLP,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    lr: float = 1e-3,
    batch: int = 256,
    seed: int = 0,
    progress: bool = False,
) -> list[float]:
    """Adam on the MSE of ``network(x [N, n_load])`` against ``y [N, n_gen]``; returns the loss per step.

    The learning rate decays by cosine to 1% over ``steps``; minibatches are
    drawn with ``seed`` (on the CPU). ``x`` and ``y`` are moved to the network's device once.
    :class:`~metamap.training.trainer.Trainer` runs the steps (a progress bar
    with ``progress``; Ctrl-C raises TrainingInterrupted after the current step).
    """
    device = module_device(network)
    x, y = x.to(device), y.to(device)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1), eta_min=lr * 0.01)
    losses = []

    def step(index: int) -> float:
        rows = torch.randint(0, x.shape[0], (min(batch, x.shape[0]),), generator=generator).to(device)
        loss = torch.nn.functional.mse_loss(network(x[rows]), y[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        return losses[-1]

    Trainer(network, optimizer, steps=steps, progress=progress, desc="dispatch network").run(step)
    return losses


class RegimeFit:
    """One network per regime, fitted to its support scenarios by full-batch Adam (``steps`` at rate ``lr``).

    ``start(k)`` returns regime k's starting network: a copy of a trained
    model (fine-tuning) or a fresh one (training from scratch). Supports and
    predictions are standardized: ``adapt((x [T, S, n_load], y [T, S, n_gen]))``,
    ``predict(x [T, Q, n_load]) -> [T, Q, n_gen]``. A fit whose loss turns
    non-finite raises :class:`~metamap.experiment.Diverged`.
    """

    def __init__(self, start: Callable[[int], MLP]) -> None:
        self.start = start

    def fit(self, source: Any) -> None:
        """The starting networks are trained (or drawn) by ``start``."""

    def adapt(self, support: tuple[torch.Tensor, torch.Tensor], *, steps: int, lr: float) -> None:
        x, y = support
        self.networks = []
        for k in range(x.shape[0]):
            network = self.start(k)
            losses = fit_network(network, x[k], y[k], steps, lr=lr, batch=x.shape[1])
            if losses and not np.isfinite(losses[-1]):
                raise Diverged(f"regime {k}: the fine-tuning loss went {losses[-1]} at lr {lr}")
            self.networks.append(network)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Standardized dispatches on the CPU; each network runs where it lives."""
        with torch.no_grad():
            return torch.stack([net(x[k].to(module_device(net))).cpu() for k, net in enumerate(self.networks)])


def choose_finetuning(
    model: DispatchModel, pd: np.ndarray, pg: np.ndarray, seed: int = 0, holdout: float = 0.2
) -> Choice:
    """The fine-tuning steps and rate (of :data:`FINETUNE_CANDIDATES`) for ``model`` on a new regime.

    ``pd [N, n_load]`` -> ``pg [N, n_gen]`` (MW) are its solved scenarios; a
    random ``holdout`` share of them (at least one; drawn with ``seed``) is
    scored in standardized MSE after fitting a copy of the network to the
    rest, never touching ``model``. At least :data:`MIN_TO_CHOOSE` scenarios.
    """
    if len(pd) < MIN_TO_CHOOSE:
        raise DataError(f"choosing the fine-tuning settings needs at least {MIN_TO_CHOOSE} scenarios, got {len(pd)}")
    order = np.random.default_rng(seed).permutation(len(pd))
    n_held = max(1, round(holdout * len(pd)))
    fit, held = order[n_held:], order[:n_held]
    x, y = standardized(model.loads_scaler, pd)[None], standardized(model.dispatch_scaler, pg)[None]
    task = ValidationTask((x[:, fit], y[:, fit]), x[:, held], y[:, held])
    method = RegimeFit(lambda k: copy.deepcopy(model.network))
    return choose_on_validation(method, FINETUNE_CANDIDATES, [task], standardized_mse, name="energy fine-tuning")


def standardized_mse(predictions: list[torch.Tensor], truths: list[torch.Tensor]) -> float:
    """Mean over validation tasks of the squared error of standardized dispatches (the score of a candidate)."""
    return float(torch.mean(torch.stack([((p - t) ** 2).mean() for p, t in zip(predictions, truths, strict=True)])))


def train_dispatch(
    pd: np.ndarray,
    pg: np.ndarray,
    hidden: tuple[int, ...] = (256, 256),
    steps: int = 3000,
    lr: float = 1e-3,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> DispatchModel:
    """Fit a :class:`DispatchModel` on ``device`` to solved scenarios ``pd [N, n_load]`` -> ``pg [N, n_gen]``
    (MW)."""
    loads_scaler, dispatch_scaler = fit_scalers(pd, pg)
    network = make_network(pd.shape[1], pg.shape[1], hidden, seed).to(device)
    fit_network(network, standardized(loads_scaler, pd), standardized(dispatch_scaler, pg), steps, lr, seed=seed)
    return DispatchModel(network, loads_scaler, dispatch_scaler)


@dataclass(frozen=True)
class RegimeData:
    """Solved scenarios of one regime: ``pd [N, n_load]``, ``pg [N, n_gen]`` MW, ``cost [N]``; ``name``."""

    name: str
    pd: np.ndarray
    pg: np.ndarray
    cost: np.ndarray


def regime_episode(
    regimes: list[RegimeData],
    scalers: tuple[Standardizer, Standardizer],
    n_support: int,
    n_query: int,
    rng: np.random.Generator,
) -> Episode:
    """An Episode with one task per regime: ``n_support`` + ``n_query`` scenarios drawn without replacement,
    standardized with ``scalers`` (loads, dispatches; :func:`fit_scalers`).

    ``meta["index"]`` (int64 ``[T, n_support + n_query]``) holds the rows drawn
    from each regime, support first.
    """
    xs, ys, picks = [], [], []
    for regime in regimes:
        if regime.pd.shape[0] < n_support + n_query:
            raise DataError(f"regime {regime.name}: {regime.pd.shape[0]} scenarios, need {n_support + n_query}")
        pick = rng.choice(regime.pd.shape[0], size=n_support + n_query, replace=False)
        xs.append(standardized(scalers[0], regime.pd[pick]))
        ys.append(standardized(scalers[1], regime.pg[pick]))
        picks.append(torch.as_tensor(pick))
    x, y = torch.stack(xs), torch.stack(ys)
    return Episode(
        x[:, :n_support], y[:, :n_support], x[:, n_support:], y[:, n_support:], meta={"index": torch.stack(picks)}
    )
