"""Per-task fitting with Adam: the "fine-tune" and "train on the target only" baselines.

Each task gets its own copy of the parameters, fitted full-batch to its
support set. The copies are stacked ``[T, *shape]`` and trained together:
task t's loss depends only on copy t and Adam's update is element-wise, so
this equals T separate trainings.
"""

from __future__ import annotations

import torch

from metamap.errors import ConfigError
from metamap.learners.gradient import AdaptedParams, GradientLearner, Params
from metamap.learners.losses import per_task_loss


def fit_per_task(
    learner: GradientLearner,
    params: Params,
    x_support: torch.Tensor,
    y_support: torch.Tensor,
    support_mask: torch.Tensor | None,
    *,
    steps: int,
    lr: float,
) -> AdaptedParams:
    """Fit ``params`` (shared starting point) to each task's support ``[T, S, ...]`` with ``steps`` Adam steps."""
    if steps < 0 or not lr > 0:
        raise ConfigError(f"fit_per_task: expected steps >= 0 and lr > 0, got steps={steps}, lr={lr}")
    learner.check(x_support, y_support)
    n_tasks = x_support.shape[0]
    fast = {
        name: params[name].detach().expand(n_tasks, *params[name].shape).clone().requires_grad_(True)
        for name in learner.adapted_names
    }
    frozen = {k: v.detach() for k, v in params.items() if k not in fast}
    optimizer = torch.optim.Adam(list(fast.values()), lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            pred = learner.forward_with({**frozen, **fast}, x_support, batched=True)
            loss = per_task_loss(learner.loss, pred, y_support, support_mask).sum()
            optimizer.zero_grad()
            torch.autograd.backward(loss)
            optimizer.step()
    return AdaptedParams(learner, {**frozen, **{k: v.detach() for k, v in fast.items()}})
