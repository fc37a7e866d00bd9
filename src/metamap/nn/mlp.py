"""Multi-layer perceptron backbone."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from metamap.errors import ConfigError

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU}


class MLP(nn.Sequential):
    """``in_features -> hidden... -> out_features``, activation between layers.

    Input ``[..., in_features]``, output ``[..., out_features]``. The MAML
    sinusoid model is ``MLP(1, [40, 40], 1)``. The last linear layer is the
    "head" (ANIL adapts only it); ``head_prefix`` names it.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        activation: str = "relu",
    ) -> None:
        if activation not in _ACTIVATIONS:
            raise ConfigError(f"MLP: unknown activation {activation!r}; expected one of {sorted(_ACTIVATIONS)}")
        widths = [in_features, *hidden]
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(width_in, width_out), _ACTIVATIONS[activation]()]
        layers.append(nn.Linear(widths[-1], out_features))
        super().__init__(*layers)
        self.in_features = in_features
        self.out_features = out_features

    @property
    def head_prefix(self) -> str:
        return str(len(self) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 - shapes in class doc
        return super().forward(x)
