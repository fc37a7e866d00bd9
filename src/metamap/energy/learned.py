"""The learned mapping loads -> dispatch, and regimes as few-shot tasks.

:class:`DispatchModel` is an MLP on standardized loads that outputs
standardized dispatches; the standardization (per load and per generator mean
and spread) comes from its training scenarios only. Its predictions are never
returned as they are: :func:`metamap.energy.feasibility.guaranteed_dispatch`
checks, repairs or replaces them.

A *regime* (a season and time-of-day window of the load profiles, and
optionally a branch out of service) is a task; its solved scenarios are the
examples. :func:`regime_episode` stacks regimes into an
:class:`~metamap.tasks.episode.Episode` (``x [T, S, n_load]`` standardized
loads, ``y [T, S, n_gen]`` standardized dispatches) for the foundation's
learners (``make_learner("maml" | "metasgd" | "reptile", model)``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from metamap.errors import CheckpointError, DataError
from metamap.nn import MLP
from metamap.report import write_json, write_safetensors
from metamap.seeding import seeded
from metamap.tasks.episode import Episode


@dataclass(frozen=True)
class Standardizer:
    """Per-column ``mean``/``scale`` of loads (``x``) and dispatches (``y``), float64 arrays."""

    x_mean: np.ndarray
    x_scale: np.ndarray
    y_mean: np.ndarray
    y_scale: np.ndarray

    @classmethod
    def fit(cls, pd: np.ndarray, pg: np.ndarray) -> Standardizer:
        """From training loads ``pd [N, n_load]`` and dispatches ``pg [N, n_gen]`` (MW); spreads floored at 1 MW."""
        if not (np.isfinite(pd).all() and np.isfinite(pg).all()):
            raise DataError(
                "Standardizer.fit: training loads and dispatches must be finite (drop infeasible scenarios)"
            )
        return cls(pd.mean(0), np.maximum(pd.std(0), 1.0), pg.mean(0), np.maximum(pg.std(0), 1.0))

    def x(self, pd: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((pd - self.x_mean) / self.x_scale, dtype=torch.float32)

    def y(self, pg: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((pg - self.y_mean) / self.y_scale, dtype=torch.float32)

    def dispatch(self, y: torch.Tensor) -> np.ndarray:
        return y.detach().cpu().double().numpy() * self.y_scale + self.y_mean


def make_network(n_load: int, n_gen: int, hidden: tuple[int, ...] = (256, 256), seed: int = 0) -> MLP:
    """The MLP ``[N, n_load] -> [N, n_gen]`` (standardized units), initialised from ``seed``."""
    with seeded(seed):
        return MLP(n_load, list(hidden), n_gen)


class DispatchModel:
    """A trained mapping loads (MW) -> dispatch (MW): ``predict(pd [N, n_load]) -> [N, n_gen]``."""

    def __init__(self, network: MLP, scaler: Standardizer) -> None:
        self.network = network
        self.scaler = scaler

    def predict(self, pd: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.scaler.dispatch(self.network(self.scaler.x(pd)))

    def save(self, folder: Path, meta: dict) -> None:
        """``model.safetensors`` (weights and standardization) + ``model.json`` (``meta``, the widths)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"net.{k}": v for k, v in self.network.state_dict().items()}
        for name in ("x_mean", "x_scale", "y_mean", "y_scale"):
            tensors[f"scaler.{name}"] = torch.as_tensor(getattr(self.scaler, name))
        write_safetensors(folder / "model.safetensors", tensors)
        hidden = [m.out_features for m in list(self.network)[:-1] if isinstance(m, torch.nn.Linear)]
        info = {**meta, "hidden": hidden, "n_load": self.network.in_features, "n_gen": self.network.out_features}
        write_json(folder / "model.json", info)

    @classmethod
    def load(cls, folder: Path) -> tuple[DispatchModel, dict]:
        """Inverse of :meth:`save`; CheckpointError when the files are missing or do not match."""
        folder = Path(folder)
        try:
            info = json.loads((folder / "model.json").read_text())
            tensors = load_file(str(folder / "model.safetensors"))
            network = MLP(info["n_load"], info["hidden"], info["n_gen"])
            network.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{folder}: not a readable energy model ({exc})") from None
        scaler = Standardizer(*(tensors[f"scaler.{n}"].numpy() for n in ("x_mean", "x_scale", "y_mean", "y_scale")))
        return cls(network, scaler), info


def fit_network(
    network: MLP, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float = 1e-3, batch: int = 256, seed: int = 0
) -> list[float]:
    """Adam on the MSE of ``network(x [N, n_load])`` against ``y [N, n_gen]``; returns the loss per step.

    The learning rate decays by cosine to 1% over ``steps``; minibatches are
    drawn with ``seed``.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1), eta_min=lr * 0.01)
    losses = []
    for _ in range(steps):
        index = torch.randint(0, x.shape[0], (min(batch, x.shape[0]),), generator=generator)
        loss = torch.nn.functional.mse_loss(network(x[index]), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
    return losses


def train_dispatch(
    pd: np.ndarray,
    pg: np.ndarray,
    hidden: tuple[int, ...] = (256, 256),
    steps: int = 3000,
    lr: float = 1e-3,
    seed: int = 0,
) -> DispatchModel:
    """Fit a :class:`DispatchModel` to solved scenarios ``pd [N, n_load]`` -> ``pg [N, n_gen]`` (MW)."""
    scaler = Standardizer.fit(pd, pg)
    network = make_network(pd.shape[1], pg.shape[1], hidden, seed)
    fit_network(network, scaler.x(pd), scaler.y(pg), steps, lr, seed=seed)
    return DispatchModel(network, scaler)


@dataclass(frozen=True)
class RegimeData:
    """Solved scenarios of one regime: ``pd [N, n_load]``, ``pg [N, n_gen]`` MW, ``cost [N]``; ``name``."""

    name: str
    pd: np.ndarray
    pg: np.ndarray
    cost: np.ndarray


def regime_episode(
    regimes: list[RegimeData], scaler: Standardizer, n_support: int, n_query: int, rng: np.random.Generator
) -> Episode:
    """An Episode with one task per regime: ``n_support`` + ``n_query`` scenarios drawn without replacement.

    ``meta["index"]`` (int64 ``[T, n_support + n_query]``) holds the rows drawn
    from each regime, support first.
    """
    xs, ys, picks = [], [], []
    for regime in regimes:
        if regime.pd.shape[0] < n_support + n_query:
            raise DataError(f"regime {regime.name}: {regime.pd.shape[0]} scenarios, need {n_support + n_query}")
        pick = rng.choice(regime.pd.shape[0], size=n_support + n_query, replace=False)
        xs.append(scaler.x(regime.pd[pick]))
        ys.append(scaler.y(regime.pg[pick]))
        picks.append(torch.as_tensor(pick))
    x, y = torch.stack(xs), torch.stack(ys)
    return Episode(
        x[:, :n_support], y[:, :n_support], x[:, n_support:], y[:, n_support:], meta={"index": torch.stack(picks)}
    )
