"""MAML (Finn et al. 2017): second order, first order, several inner steps.

Optionally the inner learning rates are learned, one per parameter tensor and
per step (the "LSLR" of Antoniou et al. 2019, MAML++).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from metamap.learners.gradient import GradientLearner


def parameter_key(name: str) -> str:
    """ParameterDict keys cannot hold dots."""
    return name.replace(".", "__")


class MAML(GradientLearner):
    """Model-Agnostic Meta-Learning.

    Args (beyond :class:`GradientLearner`):
        first_order: drop the second-order terms (FOMAML): the meta-gradient is
            the query-loss gradient at the adapted parameters.
        learn_inner_lr: learn one inner step size per parameter tensor and per
            step, initialised to ``inner_lr``.
    """

    def __init__(
        self, model: nn.Module, *, first_order: bool = False, learn_inner_lr: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(model, **kwargs)
        self.first_order = first_order
        params = dict(model.named_parameters())
        # Each rate has its parameter's dtype and device (a float64 model gets float64 rates).
        self.inner_lrs = (
            nn.ParameterDict(
                {
                    parameter_key(n): nn.Parameter(
                        torch.full(
                            (max(self.inner_steps, 1),),
                            float(self.inner_lr),
                            dtype=params[n].dtype,
                            device=params[n].device,
                        )
                    )
                    for n in self.adapted_names
                }
            )
            if learn_inner_lr
            else None
        )

    def second_order(self) -> bool:
        return not self.first_order

    def step_size(self, name: str, step: int) -> torch.Tensor | float:
        if self.inner_lrs is None:
            return self.inner_lr
        rates: torch.Tensor = self.inner_lrs[parameter_key(name)]
        return rates[min(step, rates.shape[0] - 1)]
