"""Devices and process groups under ``torchrun``: gloo on CPU, nccl on GPU.

``torchrun --nproc_per_node 2 -m metamap train ...`` sets ``WORLD_SIZE``,
``RANK`` and the rendezvous variables; :func:`distributed_session` joins the
group for the duration of a command (nccl when this process trains on a GPU,
gloo on the CPU). Without torchrun it does nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist

from metamap.errors import ConfigError


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: this process's GPU if there is one (``LOCAL_RANK`` under torchrun), else the CPU."""
    if name not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"unknown device {name!r}; expected auto, cpu or cuda")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for, but torch sees no GPU (is this a CPU build of torch?)")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


@contextmanager
def distributed_session(device: torch.device) -> Iterator[int]:
    """Join the torchrun process group if there is one; yields this process's rank (0 alone)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        yield dist.get_rank() if dist.is_initialized() else 0
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield dist.get_rank()
        # Leave together: a rank that tears gloo down while its peer is still
        # writing the checkpoint can abort the peer at shutdown.
        dist.barrier()
    finally:
        dist.destroy_process_group()
