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
        for width_in, width_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(width_in, width_out), _ACTIVATIONS[activation]()]
        layers.append(nn.Linear(widths[-1], out_features))
        super().__init__(*layers)
        self.in_features = in_features
        self.out_features = out_features

    @property
    def head_prefix(self) -> str:
        return str(len(self) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # shapes in the class doc
        # nn.Sequential.forward is unannotated; this is its loop, typed.
        for layer in self:
            x = layer(x)
        return x

    def batched_forward(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Forward pass with per-task weights, without ``vmap``'s overhead.

        ``x [T, N, in_features]`` -> ``[T, N, out_features]``. Each entry of
        ``params`` is either per task (``weight [T, out, in]``, ``bias [T, out]``)
        or shared by all tasks (the module's own shapes). Gradient learners
        use this in place of ``vmap(functional_call)`` when a backbone has it.
        """
        h = x
        for index, layer in enumerate(self):
            if not isinstance(layer, nn.Linear):
                h = layer(h)
                continue
            weight, bias = params[f"{index}.weight"], params[f"{index}.bias"]
            bias = bias.unsqueeze(-2) if bias.dim() == 2 else bias  # [T, 1, out] or shared [out]
            if weight.dim() == 2:  # shared by all tasks
                h = nn.functional.linear(h, weight) + bias
            else:
                h = torch.baddbmm(bias, h, weight.transpose(-1, -2))
        return h
