"""Sinusoid regression tasks: the protocol of Finn et al. 2017 (MAML), section 5.1.

Each task is ``y = A sin(x - phase)`` with amplitude ``A ~ U[0.1, 5.0]``,
phase ``~ U[0, pi]`` and inputs ``x ~ U[-5, 5]``; all ranges configurable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from metamap.errors import ConfigError
from metamap.tasks.episode import Episode
from metamap.tasks.family import check_split, split_generator


@dataclass(frozen=True)
class Sinusoid:
    """Family of sine waves; ``k_shot`` support and ``n_query`` query points per task.

    Episodes hold ``x`` as ``[T, S, 1]`` and ``y`` as ``[T, S, 1]`` (unitless);
    ``meta`` carries ``amplitude`` and ``phase`` as ``[T]`` tensors.
    """

    k_shot: int = 5
    n_query: int = 10
    amplitude: tuple[float, float] = (0.1, 5.0)
    phase: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)
    split_name: str = "train"

    def __post_init__(self) -> None:
        check_split(self.split_name)
        if self.k_shot < 1 or self.n_query < 1:
            raise ConfigError(
                f"Sinusoid: k_shot and n_query must be >= 1, got k_shot={self.k_shot}, n_query={self.n_query}"
            )
        for name in ("amplitude", "phase", "x_range"):
            low, high = getattr(self, name)
            if not low < high:
                raise ConfigError(f"Sinusoid: {name} range must have low < high, got ({low}, {high})")

    def split(self, name: str) -> Sinusoid:
        return replace(self, split_name=check_split(name))

    def sample(self, n_tasks: int, generator: torch.Generator) -> Episode:
        if n_tasks < 1:
            raise ConfigError(f"Sinusoid.sample: n_tasks must be >= 1, got {n_tasks}")
        gen = split_generator(generator, self.split_name)
        amp = _uniform((n_tasks,), self.amplitude, gen)
        phase = _uniform((n_tasks,), self.phase, gen)
        x = _uniform((n_tasks, self.k_shot + self.n_query, 1), self.x_range, gen)
        y = self.curve(amp, phase, x)
        k = self.k_shot
        return Episode(
            x_support=x[:, :k],
            y_support=y[:, :k],
            x_query=x[:, k:],
            y_query=y[:, k:],
            meta={"amplitude": amp, "phase": phase},
        )

    @staticmethod
    def curve(amplitude: torch.Tensor, phase: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """True values ``[T, P, 1]`` of tasks ``amplitude, phase [T]`` at ``x [T, P, 1]``."""
        return amplitude[:, None, None] * torch.sin(x - phase[:, None, None])


def _uniform(shape: tuple[int, ...], bounds: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(shape, generator=gen)
