"""A guard on adaptation: a task whose adapted network fits its own support worse than where the adaptation
started (or not at all: NaN) is predicted from the start.

A few gradient steps can blow up on a short or unusual support (a learned
per-parameter rate, a fine-tuning rate chosen on other tasks); the support
is all a method may look at, so the guard compares the support errors only.
Every domain that adapts learners uses it, so that one diverged task never
turns a table into NaN or a silently wrong forecast.
"""

from __future__ import annotations

import torch

from metamap.learners.base import Adapted


class Guarded:
    """Predictions per task from ``adapted`` where ``kept [T]`` is True and from ``start`` elsewhere.

    ``fallbacks``: how many tasks went back to the start.
    """

    def __init__(self, start: Adapted, adapted: Adapted, kept: torch.Tensor) -> None:
        self.start, self.adapted, self.kept = start, adapted, kept
        self.fallbacks = int((~kept).sum())

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """``x [T, Q, ...]`` -> ``[T, Q, ...]``."""
        chosen = self.adapted.predict(x)
        if self.fallbacks == 0:
            return chosen
        kept = self.kept.to(chosen.device).view(-1, *([1] * (chosen.dim() - 1)))
        return torch.where(kept, chosen, self.start.predict(x))


def support_mse(
    model: Adapted, x_support: torch.Tensor, y_support: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """Per-task MSE ``[T]`` of ``model`` on its support ``x [T, S, ...]``, ``y [T, S, ...]`` (``mask``: True
    where ``y`` counts; a task with nothing to count scores 0)."""
    with torch.no_grad():
        squared = (model.predict(x_support) - y_support).square().flatten(1)
    if mask is None:
        return squared.mean(dim=1)
    weight = mask.flatten(1).to(squared.dtype)
    return torch.where(weight > 0, squared, torch.zeros_like(squared)).sum(dim=1) / weight.sum(dim=1).clamp_min(1)


def guard(
    start: Adapted,
    adapted: Adapted,
    x_support: torch.Tensor,
    y_support: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> Guarded:
    """Keep ``adapted`` for the tasks whose support MSE is finite and no larger than ``start``'s."""
    before = support_mse(start, x_support, y_support, mask)
    after = support_mse(adapted, x_support, y_support, mask)
    return Guarded(start, adapted, torch.isfinite(after) & (after <= before))
