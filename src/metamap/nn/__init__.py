"""Plain ``torch.nn`` backbones that work under ``torch.func.vmap`` (no running statistics)."""

from metamap.nn.conv4 import Conv4
from metamap.nn.mlp import MLP

__all__ = ["MLP", "Conv4"]
