"""The protocol every meta-learner follows, and what the learners share.

A learner holds meta-parameters (an ``nn.Module``) and offers:

- ``meta_loss(episode) -> scalar``: differentiable in the meta-parameters;
- ``meta_backward(episode) -> float``: backward of ``meta_loss``, chunked over
  tasks where the learner supports it (bounded memory);
- ``adapt(x_support, y_support, support_mask=None) -> Adapted``;
- ``Adapted.predict(x_query) -> predictions``;
- ``evaluate(episode) -> Tensor[T]``: per-task query MSE (regression) or
  accuracy (classification) after adaptation.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from metamap.errors import ConfigError, ShapeError, describe
from metamap.nn.devices import module_device
from metamap.tasks.episode import Episode

LOSSES = ("mse", "cross_entropy")


class Adapted(Protocol):
    """A learner after adaptation to a batch of T tasks."""

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """``x [T, Q, *x_shape]`` -> predictions ``[T, Q, *y_shape]`` or logits ``[T, Q, n_way]``."""
        ...


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values [..., N]`` over the last dim, counting only ``mask`` (bool, same shape)."""
    if mask is None:
        return values.mean(-1)
    weights = mask.to(values.dtype)
    return (values * weights).sum(-1) / weights.sum(-1).clamp(min=1.0)


def per_example_loss(kind: str, pred: torch.Tensor, target: torch.Tensor, n_lead: int) -> torch.Tensor:
    """Loss of each example; the first ``n_lead`` dims of ``target`` index examples.

    ``mse``: ``pred``, ``target`` ``[*lead, *y]`` -> ``[*lead]`` (mean over ``y``).
    ``cross_entropy``: logits ``[*lead, C]``, class indices ``[*lead]`` -> ``[*lead]``.
    """
    lead = target.shape[:n_lead]
    if kind == "mse":
        return ((pred - target) ** 2).reshape(*lead, -1).mean(-1)
    return F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), reduction="none").reshape(lead)


def task_loss(
    kind: str, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, n_lead: int = 1
) -> torch.Tensor:
    """Masked mean loss over the last leading dim: ``n_lead=1`` one task -> scalar; 2 -> ``[T]``.

    ``mask`` is per example (``[*lead]``) or, for regression, per target value
    (the shape of ``target``, e.g. a forecast whose later readings are missing):
    then the loss is the mean squared error over the valid values of the task.
    """
    if mask is not None and mask.dim() > n_lead:
        weights = mask.to(pred.dtype)
        dims = tuple(range(n_lead - 1, target.dim()))
        return (((pred - target) ** 2) * weights).sum(dims) / weights.sum(dims).clamp(min=1.0)
    return masked_mean(per_example_loss(kind, pred, target, n_lead), mask)


def task_metric(kind: str, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Per-task query metric for batched ``[T, Q, ...]``: MSE (regression) or accuracy in [0, 1]."""
    if kind == "mse":
        return task_loss(kind, pred, target, mask, n_lead=2)
    correct = (pred.argmax(-1) == target).to(pred.dtype)
    return masked_mean(correct, mask)


def check_loss(kind: str) -> str:
    if kind not in LOSSES:
        raise ConfigError(f"unknown loss {kind!r}; expected one of {', '.join(LOSSES)}")
    return kind


def check_inputs(
    model: nn.Module, kind: str, x_support: torch.Tensor, y_support: torch.Tensor, outputs_logits: bool = True
) -> int:
    """Raise ShapeError if ``model`` cannot consume ``x_support [T, S, ...]`` or its output cannot meet ``y_support``.

    Returns the model's output width (the number of logits for classifiers).

    Runs the model once on one support example of the first task.
    ``outputs_logits=False`` for embedding networks (their output is not checked against labels).
    """
    y = y_support
    if x_support.dim() < 3 or y.dim() < 2 or tuple(x_support.shape[:2]) != tuple(y.shape[:2]):
        raise ShapeError(
            f"expected support inputs [tasks, examples, *features] and targets [tasks, examples, ...] "
            f"with matching leading dims, got x {describe(x_support)} and y {describe(y)}"
        )
    if kind == "mse" and not torch.is_floating_point(y):
        raise ShapeError(f"loss 'mse' needs float targets, but the episode has class labels {describe(y)}")
    if kind == "cross_entropy" and (torch.is_floating_point(y) or y.dim() != 2):
        raise ShapeError(f"loss 'cross_entropy' needs int64 class labels [tasks, examples], got {describe(y)}")
    sample = x_support[0, :1]
    # A parameter-free model (a fixed feature map, nn.Identity) runs where the data are.
    device = module_device(model, default=sample.device)
    try:
        with torch.no_grad():
            out = model(sample.to(device))
    except (RuntimeError, ValueError, IndexError) as exc:
        raise ShapeError(
            f"the model cannot take this episode's inputs: one example is {describe(sample[0])} "
            f"(x_support {describe(x_support)}); the model said: {str(exc).splitlines()[0]}"
        ) from None
    if kind == "mse" and tuple(out.shape[1:]) != tuple(y.shape[2:]):
        raise ShapeError(
            f"the model outputs {describe(out[0])} per example but the episode's targets are "
            f"{describe(y[0, 0])} per example (y_support {describe(y)})"
        )
    return int(out.shape[-1])


class MetaLearner(nn.Module):
    """What every learner shares: validation, chunked meta-backward, evaluation.

    Subclasses implement ``meta_loss(episode)`` and ``adapt(x_support,
    y_support, support_mask, **options) -> Adapted``.

    Args:
        model: the backbone holding (most of) the meta-parameters.
        loss: ``"mse"`` or ``"cross_entropy"``.
        chunk_size: tasks per chunk in ``meta_backward``/``evaluate``; ``None`` = all.
    """

    outputs_logits = True

    def __init__(self, model: nn.Module, *, loss: str = "mse", chunk_size: int | None = None) -> None:
        super().__init__()
        if chunk_size is not None and chunk_size < 1:
            raise ConfigError(f"chunk_size must be >= 1 or None, got {chunk_size}")
        self.model = model
        self.loss = check_loss(loss)
        self.chunk_size = chunk_size
        self._checked: dict[tuple[tuple[int, ...], tuple[int, ...], torch.dtype, torch.dtype], int] = {}

    def check(self, x_support: torch.Tensor, y_support: torch.Tensor) -> None:
        """Validate that the model fits the support data (the model is run once per input signature)."""
        key = (tuple(x_support.shape[2:]), tuple(y_support.shape[2:]), x_support.dtype, y_support.dtype)
        if key not in self._checked:
            self._checked[key] = check_inputs(self.model, self.loss, x_support, y_support, self.outputs_logits)
        n_logits = self._checked[key]
        if self.loss == "cross_entropy" and self.outputs_logits and int(y_support.max()) >= n_logits:
            raise ShapeError(
                f"the model outputs {n_logits} logits per example but the episode has labels up to {int(y_support.max())}"
            )

    def meta_loss(self, episode: Episode) -> torch.Tensor:
        raise NotImplementedError

    def adapt(
        self,
        x_support: torch.Tensor,
        y_support: torch.Tensor,
        support_mask: torch.Tensor | None = None,
        *args: Any,
        **options: Any,
    ) -> Adapted:
        """Adapt to each task of ``x_support [T, S, ...]``; the options are the learner's own.

        ``*args: Any, **options: Any`` leave each subclass free to declare the
        options it accepts (``steps``, ``gated``, ...) or to refuse any.
        """
        raise NotImplementedError

    def meta_backward(self, episode: Episode) -> float:
        """Accumulate the meta-gradient of ``meta_loss`` into ``.grad``, chunk by chunk; returns the loss.

        Each chunk's graph is freed before the next is built, so memory is
        bounded by ``chunk_size`` tasks; the sum equals the unchunked gradient.
        """
        total = 0.0
        for chunk in episode.chunks(self.chunk_size):
            loss = self.meta_loss(chunk) * (chunk.n_tasks / episode.n_tasks)
            torch.autograd.backward(loss)
            total += float(loss.detach())
        return total

    def evaluate(self, episode: Episode, **options: Any) -> torch.Tensor:
        """Per-task query metric after adaptation, ``[T]``: MSE or accuracy in [0, 1].

        A task whose predictions are not finite (its adaptation diverged) gets NaN.
        """
        self.check(episode.x_support, episode.y_support)
        results = []
        for chunk in episode.chunks(self.chunk_size):
            adapted = self.adapt(chunk.x_support, chunk.y_support, chunk.support_mask, **options)
            with torch.no_grad():
                pred = adapted.predict(chunk.x_query)
            metric = task_metric(self.loss, pred, chunk.y_query, chunk.query_mask)
            finite = torch.isfinite(pred).reshape(pred.shape[0], -1).all(-1)
            results.append(torch.where(finite, metric, torch.full_like(metric, math.nan)))
        return torch.cat(results)
