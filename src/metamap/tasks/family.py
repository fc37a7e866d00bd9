"""TaskFamily: the protocol every source of few-shot tasks follows.

A family draws batches of tasks: ``sample(n_tasks, generator) -> Episode``.
Families are split-aware: ``family.split("train" | "val" | "test")`` returns
a family whose tasks never overlap with the other splits'. Given the same
generator state, ``sample`` returns the same numbers.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from metamap.errors import ConfigError
from metamap.tasks.episode import Episode

SPLITS = ("train", "val", "test")


@runtime_checkable
class TaskFamily(Protocol):
    """A distribution over tasks; ``split`` names which disjoint part it draws from."""

    split_name: str

    def sample(self, n_tasks: int, generator: torch.Generator) -> Episode:
        """Draw ``n_tasks`` tasks, each with its support and query set."""
        ...

    def split(self, name: str) -> TaskFamily:
        """The same family restricted to split ``name`` (train, val or test)."""
        ...


def check_split(name: str) -> str:
    """Return ``name`` if it is a known split, else raise ConfigError."""
    if name not in SPLITS:
        raise ConfigError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
    return name


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``: the one source of randomness for sampling."""
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    return gen


def split_generator(generator: torch.Generator, split_name: str) -> torch.Generator:
    """A generator for one draw of split ``split_name``, derived from ``generator``.

    One number is consumed from ``generator``; it is salted with the split, so
    the same seed gives different tasks in train, val and test. Used by
    continuous families, whose splits are independent streams (two splits
    share a task with probability zero).
    """
    base = int(torch.randint(0, 2**62, (1,), generator=generator))
    derived = torch.Generator()
    derived.manual_seed(base ^ (SPLITS.index(split_name) * 0x9E3779B97F4A7C15 % 2**62))
    return derived
