"""Seeded draws from torch's global generator that leave the caller's generator as it was.

Layers built by ``torch.nn`` (``nn.Linear``, ``nn.Conv2d``, ...) draw their
initial weights from torch's global CPU generator; there is no generator
argument to pass. Library code that must build a network "initialised from
``seed``" therefore builds it inside :func:`seeded`: the global generator is
seeded for the block and restored afterwards, so calling the library never
changes the random numbers the caller draws next. This is the one module of
the library that seeds torch's global generator.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Inside the block torch's global CPU generator starts from ``seed``; after it, it is back where it was.

    CUDA generators are neither seeded nor touched: the library builds networks on the CPU.
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(int(seed))
        yield
