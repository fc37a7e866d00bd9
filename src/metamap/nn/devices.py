"""Where a network lives, and whether a random generator can draw there."""

from __future__ import annotations

import torch
from torch import nn

from metamap.errors import ConfigError


def module_device(module: nn.Module, default: torch.device | None = None) -> torch.device:
    """Where the module's parameters live; ``default`` (else the CPU) for a parameter-free module."""
    first = next(iter(module.parameters()), None)
    if first is not None:
        return first.device
    return default if default is not None else torch.device("cpu")


def check_generator(generator: torch.Generator | None, device: torch.device) -> None:
    """Refuse a ``generator`` that cannot draw on ``device``: torch draws random numbers only where the
    generator lives, so a model on the GPU needs ``torch.Generator(device="cuda")``.

    Raises:
        ConfigError: the generator lives on another device than ``device``.
    """
    if generator is None:
        return
    where = generator.device
    same_index = where.index is None or device.index is None or where.index == device.index
    if where.type != device.type or not same_index:
        raise ConfigError(
            f"the random generator lives on {where}, the model on {device}: "
            f"pass torch.Generator(device={str(device)!r}) to draw where the model is"
        )
