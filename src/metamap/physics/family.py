"""Few-shot tasks from a parametric physical system: one task = one system (one parameter draw).

A bank of systems is simulated once on a grid (ODEs: 201 times over
[0, t_max]; heat: 41 times x 31 positions). A task observes K grid points
drawn at random (irregular times) with Gaussian noise of std ``noise``; its
query is ``n_query`` more noisy points (meta-training) or, with
``dense=True``, every grid point without noise (evaluation: the trajectory
to predict). Model inputs are rescaled to [-1, 1]: ``2 t / t_max - 1`` (and
``2 x - 1`` for heat); outputs are the states themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Protocol

import numpy as np
import torch

from metamap.errors import ConfigError
from metamap.physics.systems import System
from metamap.tasks.episode import Episode
from metamap.tasks.family import SPLITS, check_split

ODE_GRID = 201
HEAT_TIMES, HEAT_POSITIONS = 41, 31


def grid_points(system: System) -> tuple[np.ndarray, np.ndarray | None]:
    """The simulation grid: times ``[G]`` and, for heat, positions ``[G]``."""
    if system.n_in == 1:
        return np.linspace(0.0, system.t_max, ODE_GRID), None
    t, x = np.meshgrid(
        np.linspace(0.0, system.t_max, HEAT_TIMES), np.linspace(0.0, 1.0, HEAT_POSITIONS + 2)[1:-1], indexing="ij"
    )
    return t.ravel(), x.ravel()


def model_inputs(system: System, t: np.ndarray, x: np.ndarray | None) -> np.ndarray:
    """Network inputs ``float32 [N, n_in]`` in [-1, 1] for times ``t [N]`` (and positions ``x [N]``)."""
    columns = [2.0 * t / system.t_max - 1.0] + ([] if x is None else [2.0 * x - 1.0])
    return np.stack(columns, axis=1).astype(np.float32)


class SystemTasks(Protocol):
    """Tasks of one physical ``system`` (a ``TaskFamily`` that names its system): what the learners train on."""

    @property
    def system(self) -> System: ...

    def sample(self, n_tasks: int, generator: torch.Generator) -> Episode: ...

    def split(self, name: str) -> SystemTasks: ...


@dataclass(frozen=True, eq=False)
class SystemFamily:
    """Tasks of ``system``; the bank of each split has its own seed, so splits share no system."""

    system: System
    k_shot: int = 10
    n_query: int = 30
    noise: float = 0.05
    n_systems: dict[str, int] = field(default_factory=lambda: {"train": 1000, "val": 100, "test": 100})
    seed: int = 0
    split_name: str = "train"
    dense: bool = False

    def __post_init__(self) -> None:
        check_split(self.split_name)
        if self.k_shot < 1 or self.n_query < 1 or self.noise < 0:
            raise ConfigError(
                f"SystemFamily: expected k_shot, n_query >= 1 and noise >= 0, "
                f"got {self.k_shot}, {self.n_query}, {self.noise}"
            )
        n_grid = grid_points(self.system)[0].size
        if self.k_shot + self.n_query > n_grid:
            raise ConfigError(
                f"SystemFamily: k_shot + n_query = {self.k_shot} + {self.n_query} exceeds the "
                f"{n_grid} points of {self.system.name}'s grid"
            )

    def split(self, name: str) -> SystemFamily:
        return replace(self, split_name=check_split(name))

    @cached_property
    def bank(self) -> tuple[np.ndarray, np.ndarray]:
        """``(params [n, P], states [n, G, n_out])`` of this split's systems."""
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split_name)])
        params = self.system.sample(self.n_systems[self.split_name], rng)
        t, x = grid_points(self.system)
        return params, np.stack([self.system.simulate(p, t, x) for p in params])

    def sample(self, n_tasks: int, generator: torch.Generator) -> Episode:
        """``meta``: ``params [T, P]`` (true parameters), ``system [T]`` (bank index), ``support_index [T, K]``."""
        params, states = self.bank
        inputs = torch.as_tensor(model_inputs(self.system, *grid_points(self.system)))
        states = torch.as_tensor(states, dtype=torch.float32)
        n_grid = inputs.shape[0]
        picks = torch.randint(params.shape[0], (n_tasks,), generator=generator)
        order = torch.rand(n_tasks, n_grid, generator=generator).argsort(1)
        support = order[:, : self.k_shot]
        query = (
            torch.arange(n_grid).expand(n_tasks, -1)
            if self.dense
            else order[:, self.k_shot : self.k_shot + self.n_query]
        )
        truth = states[picks]  # [T, G, n_out]
        y_support = _take(truth, support) + self.noise * torch.randn(
            *support.shape, truth.shape[-1], generator=generator
        )
        y_query = _take(truth, query)
        if not self.dense:
            y_query = y_query + self.noise * torch.randn(y_query.shape, generator=generator)
        return Episode(
            inputs[support],
            y_support,
            inputs[query],
            y_query,
            meta={"params": torch.as_tensor(params)[picks], "system": picks, "support_index": support},
        )


def _take(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values [T, G, D]`` at ``index [T, N]`` -> ``[T, N, D]``."""
    return torch.gather(values, 1, index[..., None].expand(-1, -1, values.shape[-1]))
