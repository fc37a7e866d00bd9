"""Process groups under ``torchrun``: gloo on CPU, nccl on GPU.

``torchrun --nproc_per_node 2 -m metamap train ...`` sets ``WORLD_SIZE``,
``RANK`` and the rendezvous variables; :func:`distributed_session` joins the
group for the duration of a command. Without torchrun it does nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist


@contextmanager
def distributed_session() -> Iterator[int]:
    """Join the torchrun process group if there is one; yields this process's rank (0 alone)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        yield dist.get_rank() if dist.is_initialized() else 0
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    try:
        yield dist.get_rank()
    finally:
        dist.destroy_process_group()
