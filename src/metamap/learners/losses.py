"""Training losses: the built-in ones by name, or any callable ``loss(prediction, target, mask) -> scalar``.

A loss scores one task: ``prediction [N, ...]`` against ``target [N, ...]``
(N examples) with an optional bool ``mask``, per example ``[N]`` or, for
regression, per target value (the shape of ``target``); it returns the
scalar mean over the valid entries. Learners apply it to the T tasks of a
batch with :func:`per_task_loss`; a custom callable is ``vmap``-ed there, so
it must be written with tensor operations only (no ``.item()``, no branch on
values). A domain can so train on a Gaussian NLL (a prediction of twice the
target's width: mean and log-variance) or any loss of its own.

The built-in losses have names, which runs record: ``"mse"``, ``"mae"`` and
``"huber"`` (regression, float targets) and ``"cross_entropy"`` (logits
``[N, C]`` and int64 class indices ``[N]``). They also run batched, without
``vmap``. A custom callable has no name, so a run that uses one cannot be
saved or resumed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.func import vmap

from metamap.errors import ConfigError

LossFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]
"""``loss(prediction [N, ...], target [N, ...], mask [N] | [N, ...] | None) -> scalar`` for one task."""


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values [..., N]`` over the last dim, counting only ``mask`` (bool, same shape)."""
    if mask is None:
        return values.mean(-1)
    weights = mask.to(values.dtype)
    return (values * weights).sum(-1) / weights.sum(-1).clamp(min=1.0)


class NamedLoss:
    """A built-in loss: a name runs record, the kind of targets it takes, and a batched path.

    ``loss(prediction, target, mask)`` scores one task; ``batched(...,
    n_lead=2)`` scores each task of ``[T, N, ...]`` at once, ``[T]``.
    """

    classification = False

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.batched(prediction, target, mask, n_lead=1)

    def batched(
        self, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, n_lead: int
    ) -> torch.Tensor:
        """Masked mean loss over the last of the first ``n_lead`` dims of ``target``: ``[*target.shape[:n_lead-1]]``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"NamedLoss({self.name!r})"


class ElementwiseLoss(NamedLoss):
    """A regression loss built from an error per target value, ``error(prediction, target)``.

    Without a per-value mask each example's errors are averaged first, then
    the examples (those ``mask`` keeps); with one, the mean runs over the
    task's valid values.
    """

    def __init__(self, name: str, error: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__(name)
        self.error = error

    def batched(
        self, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, n_lead: int
    ) -> torch.Tensor:
        errors = self.error(prediction, target)
        if mask is not None and mask.dim() > n_lead:
            weights = mask.to(prediction.dtype)
            dims = tuple(range(n_lead - 1, target.dim()))
            return (errors * weights).sum(dims) / weights.sum(dims).clamp(min=1.0)
        lead = target.shape[:n_lead]
        return masked_mean(errors.reshape(*lead, -1).mean(-1), mask)


class CrossEntropyLoss(NamedLoss):
    """Cross-entropy of logits ``[..., C]`` against int64 class indices ``[...]``."""

    classification = True

    def batched(
        self, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, n_lead: int
    ) -> torch.Tensor:
        lead = target.shape[:n_lead]
        flat = F.cross_entropy(prediction.reshape(-1, prediction.shape[-1]), target.reshape(-1), reduction="none")
        return masked_mean(flat.reshape(lead), mask)


def _squared_error(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (prediction - target) ** 2


def _absolute_error(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (prediction - target).abs()


def _huber_error(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``0.5 e^2`` for ``|e| <= 1``, ``|e| - 0.5`` beyond (Huber with delta 1, in the target's units)."""
    return F.huber_loss(prediction, target, reduction="none", delta=1.0)


mse = ElementwiseLoss("mse", _squared_error)
mae = ElementwiseLoss("mae", _absolute_error)
huber = ElementwiseLoss("huber", _huber_error)
cross_entropy = CrossEntropyLoss("cross_entropy")

LOSSES: dict[str, NamedLoss] = {loss.name: loss for loss in (mse, mae, huber, cross_entropy)}


def resolve_loss(loss: str | LossFn) -> LossFn:
    """The callable for ``loss``: a built-in name (see :data:`LOSSES`) or a callable as it is."""
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ConfigError(f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)} or a callable")
        return LOSSES[loss]
    if not callable(loss):
        raise ConfigError(
            f"loss: expected a name ({', '.join(LOSSES)}) or a callable loss(prediction, target, mask), "
            f"got {type(loss).__name__}"
        )
    return loss


def loss_name(loss: LossFn) -> str | None:
    """The name a run records for ``loss``; None for a custom callable."""
    return loss.name if isinstance(loss, NamedLoss) else None


def per_task_loss(
    loss: LossFn, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """``loss`` of each task of ``prediction``, ``target [T, N, ...]`` and ``mask [T, ...]``: ``[T]``."""
    if isinstance(loss, NamedLoss):
        return loss.batched(prediction, target, mask, n_lead=2)
    per_task: torch.Tensor = vmap(loss, in_dims=(0, 0, None if mask is None else 0))(prediction, target, mask)
    return per_task
