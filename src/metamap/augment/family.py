"""Task families with synthetic tasks mixed into meta-training.

:class:`AugmentedFamily` wraps a real family and a synthetic one (same
kind of tasks: same K, noise, query sampling). Its ``"train"`` split draws
``round(synthetic_fraction * n_tasks)`` of every batch from the synthetic
family (as given: all of its tasks are meta-train tasks) and the rest from
the real one; ``"val"`` and ``"test"`` are the
real family's, unchanged. With ``synthetic_fraction = 0`` (the default:
augmentation off) ``sample`` returns exactly the real family's episode for
the same generator state.

The synthetic family of each domain lives with the domain (e.g.
:class:`metamap.physics.augmentation.SyntheticSystems`): this module knows
no domain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from metamap.augment.generators import fit_and_draw
from metamap.errors import ConfigError
from metamap.tasks.episode import Episode, concat_episodes
from metamap.tasks.family import TaskFamily, check_split


@dataclass(frozen=True, eq=False)
class AugmentedFamily:
    """``real`` tasks, with ``synthetic_fraction`` of each meta-train batch from ``synthetic``."""

    real: TaskFamily
    synthetic: TaskFamily | None = None
    synthetic_fraction: float = 0.0
    split_name: str = "train"

    def __post_init__(self) -> None:
        check_split(self.split_name)
        if not 0 <= self.synthetic_fraction <= 1:
            raise ConfigError(f"AugmentedFamily: expected 0 <= synthetic_fraction <= 1, got {self.synthetic_fraction}")
        if self.synthetic_fraction > 0 and self.synthetic is None:
            raise ConfigError("AugmentedFamily: synthetic_fraction > 0 needs a synthetic family")

    def __getattr__(self, name: str) -> Any:
        """Other attributes (``system``, ``k_shot``, ...) are the real family's."""
        if name.startswith("__") or name in ("real", "synthetic", "synthetic_fraction", "split_name"):
            raise AttributeError(name)
        return getattr(self.real, name)

    def split(self, name: str) -> AugmentedFamily:
        """The real family's split ``name`` (built once here: a real family may simulate its bank per split)."""
        return replace(self, real=self.real.split(check_split(name)), split_name=name)

    def n_synthetic(self, n_tasks: int) -> int:
        """How many of ``n_tasks`` a batch of this split draws from the synthetic family."""
        return round(self.synthetic_fraction * n_tasks) if self.split_name == "train" else 0

    def sample(self, n_tasks: int, generator: torch.Generator) -> Episode:
        """Real tasks first, then synthetic ones; ``meta["synthetic"]`` (bool ``[T]``) tells which is which."""
        n_synthetic = self.n_synthetic(n_tasks)
        real = self.real if self.real.split_name == self.split_name else self.real.split(self.split_name)
        if n_synthetic == 0:
            return real.sample(n_tasks, generator)
        parts = [real.sample(n_tasks - n_synthetic, generator)] if n_tasks > n_synthetic else []
        parts.append(self.synthetic.sample(n_synthetic, generator))
        flags = torch.cat([torch.full((p.n_tasks,), i == len(parts) - 1) for i, p in enumerate(parts)])
        return concat_episodes(parts, extra_meta={"synthetic": flags})


def augmented_conditions(
    family: TaskFamily,
    real_samples: np.ndarray,
    make_synthetic: Callable[[np.ndarray], TaskFamily],
    generators: Sequence[str],
    n_synthetic: int,
    synthetic_fraction: float,
    seed: int,
    generator_options: dict[str, dict[str, Any]] | None = None,
) -> tuple[dict[str, TaskFamily], dict[str, Any], dict[str, list]]:
    """The training families of an ablation: ``"none"`` (``family`` itself), then one per generator.

    Each generator is fitted on ``real_samples [n_real, *shape]`` and draws ``n_synthetic``;
    ``make_synthetic(drawn)`` turns them into the synthetic family mixed in at ``synthetic_fraction``.
    Also returns each generator's fit info and the first 3 real and drawn samples (JSON-able, for plots).
    """
    conditions: dict[str, TaskFamily] = {"none": family}
    info: dict[str, Any] = {}
    examples = {"real": real_samples[:3].tolist()}
    for name in generators:
        drawn, info[name] = fit_and_draw(name, real_samples, n_synthetic, seed, (generator_options or {}).get(name))
        examples[name] = drawn[:3].tolist()
        conditions[name] = AugmentedFamily(family, make_synthetic(drawn), synthetic_fraction)
    return conditions, info, examples
