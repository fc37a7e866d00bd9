"""Meta-SGD (Li et al. 2017): a learned learning rate for every parameter element.

The inner update is ``theta' = theta - alpha * grad`` with ``alpha`` the same
shape as ``theta``, meta-learned with it; its sign learns the direction as well
as the size of each step. ``alpha`` is initialised to ``inner_lr``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from metamap.learners.gradient import GradientLearner
from metamap.learners.maml import parameter_key


class MetaSGD(GradientLearner):
    """Meta-SGD on any backbone; second order (the paper's setting)."""

    def __init__(self, model: nn.Module, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        params = dict(model.named_parameters())
        self.alphas = nn.ParameterDict(
            {
                parameter_key(n): nn.Parameter(torch.full_like(params[n], float(self.inner_lr)))
                for n in self.adapted_names
            }
        )

    def step_size(self, name: str, step: int) -> torch.Tensor:
        alpha: torch.Tensor = self.alphas[parameter_key(name)]
        return alpha
