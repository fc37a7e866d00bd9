"""The protocol every meta-learner follows, and what the learners share.

A learner holds meta-parameters (an ``nn.Module``) and offers:

- ``meta_loss(episode) -> scalar``: differentiable in the meta-parameters;
- ``meta_backward(episode) -> float``: backward of ``meta_loss``, chunked over
  tasks where the learner supports it (bounded memory);
- ``adapt(x_support, y_support, support_mask=None, options=AdaptOptions()) -> Adapted``;
- ``Adapted.predict(x_query) -> predictions``;
- ``evaluate(episode) -> Tensor[T]``: per-task query MSE (regression) or
  accuracy (classification) after adaptation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from metamap.errors import ConfigError, ShapeError, describe
from metamap.learners.losses import LossFn, NamedLoss, masked_mean, mse, resolve_loss
from metamap.nn.devices import module_device
from metamap.tasks.episode import Episode


@dataclass(frozen=True)
class AdaptOptions:
    """How ``adapt`` (and ``evaluate``) adapts; a field left None takes the learner's own setting.

    Every learner takes the same options object and names the fields it uses
    (``MetaLearner.adapt_options``); setting any other is a ConfigError.

    Args:
        steps: gradient steps on the support set (default: the learner's ``inner_steps``).
        gated: ``False`` runs a gated optimizer's base optimizer alone (every gate 1).
    """

    steps: int | None = None
    gated: bool | None = None

    def __post_init__(self) -> None:
        if self.steps is not None and (type(self.steps) is not int or self.steps < 0):
            raise ConfigError(f"adapt option steps must be a whole number >= 0, got {self.steps!r}")
        if self.gated is not None and type(self.gated) is not bool:
            raise ConfigError(f"adapt option gated must be True or False, got {self.gated!r}")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> AdaptOptions:
        """Options from plain keywords (a configuration, a command line); unknown names are a ConfigError."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ConfigError(f"unknown adapt option(s) {unknown}; the adapt options are {known}")
        return cls(**options)

    def given(self) -> list[str]:
        """Names of the options set (not None)."""
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]


ADAPT_DEFAULTS = AdaptOptions()


class Adapted(Protocol):
    """A learner after adaptation to a batch of T tasks."""

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """``x [T, Q, *x_shape]`` -> predictions ``[T, Q, *y_shape]`` or logits ``[T, Q, n_way]``."""
        ...


def task_metric(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Per-task query metric for batched ``[T, Q, ...]``: MSE (float targets) or accuracy in [0, 1] (labels).

    The metric belongs to the task, not to the training loss: a regression
    learner trained on MAE or Huber is still scored by its MSE.
    """
    if torch.is_floating_point(target):
        return mse.batched(pred, target, mask, n_lead=2)
    correct = (pred.argmax(-1) == target).to(pred.dtype)
    return masked_mean(correct, mask)


def check_inputs(
    model: nn.Module, loss: LossFn, x_support: torch.Tensor, y_support: torch.Tensor, outputs_logits: bool = True
) -> int:
    """Raise ShapeError if ``model`` cannot consume ``x_support [T, S, ...]`` or its output cannot meet ``y_support``.

    Returns the model's output width (the number of logits for classifiers).

    Runs the model once on one support example of the first task. A built-in
    loss also checks the targets: float values of the model's output shape
    (regression) or int64 labels ``[T, S]`` (cross-entropy); a custom loss
    decides for itself what it compares. ``outputs_logits=False`` for
    embedding networks (their output is not checked against labels).
    """
    y = y_support
    if x_support.dim() < 3 or y.dim() < 2 or tuple(x_support.shape[:2]) != tuple(y.shape[:2]):
        raise ShapeError(
            f"expected support inputs [tasks, examples, *features] and targets [tasks, examples, ...] "
            f"with matching leading dims, got x {describe(x_support)} and y {describe(y)}"
        )
    regression = isinstance(loss, NamedLoss) and not loss.classification
    if isinstance(loss, NamedLoss) and regression and not torch.is_floating_point(y):
        raise ShapeError(f"loss {loss.name!r} needs float targets, but the episode has class labels {describe(y)}")
    if isinstance(loss, NamedLoss) and loss.classification and (torch.is_floating_point(y) or y.dim() != 2):
        raise ShapeError(f"loss {loss.name!r} needs int64 class labels [tasks, examples], got {describe(y)}")
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
    if regression and tuple(out.shape[1:]) != tuple(y.shape[2:]):
        raise ShapeError(
            f"the model outputs {describe(out[0])} per example but the episode's targets are "
            f"{describe(y[0, 0])} per example (y_support {describe(y)})"
        )
    return int(out.shape[-1])


class MetaLearner(nn.Module):
    """What every learner shares: validation, options, chunked meta-backward, evaluation.

    Subclasses implement ``meta_loss(episode)`` and ``adapt_checked(x_support,
    y_support, support_mask, options) -> Adapted``, and name the
    :class:`AdaptOptions` fields they use in ``adapt_options``.

    Validation happens at the boundary: :meth:`adapt` and :meth:`evaluate`
    check that the model fits the data (and the options); ``meta_loss`` and
    ``meta_backward`` trust their episode, which the training loop checks
    once (:meth:`check`) before its first step.

    Args:
        model: the backbone holding (most of) the meta-parameters.
        loss: a built-in loss name (``"mse"``, ``"mae"``, ``"huber"``, ``"cross_entropy"``)
            or a callable ``loss(prediction, target, mask) -> scalar`` (see :mod:`metamap.learners.losses`).
        chunk_size: tasks per chunk in ``meta_backward``/``evaluate``; ``None`` = all.
    """

    outputs_logits = True
    adapt_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, model: nn.Module, *, loss: str | LossFn = "mse", chunk_size: int | None = None) -> None:
        super().__init__()
        if chunk_size is not None and chunk_size < 1:
            raise ConfigError(f"chunk_size must be >= 1 or None, got {chunk_size}")
        self.model = model
        self.loss = resolve_loss(loss)
        self.chunk_size = chunk_size
        self._checked: dict[tuple[tuple[int, ...], tuple[int, ...], torch.dtype, torch.dtype], int] = {}

    @property
    def loss_name(self) -> str | None:
        """The name of the training loss, which runs record; None for a custom callable."""
        return self.loss.name if isinstance(self.loss, NamedLoss) else None

    def check(self, x_support: torch.Tensor, y_support: torch.Tensor) -> None:
        """Validate that the model fits the support data (the model is run once per input signature)."""
        key = (tuple(x_support.shape[2:]), tuple(y_support.shape[2:]), x_support.dtype, y_support.dtype)
        if key not in self._checked:
            self._checked[key] = check_inputs(self.model, self.loss, x_support, y_support, self.outputs_logits)
        n_logits = self._checked[key]
        classifies = isinstance(self.loss, NamedLoss) and self.loss.classification
        if classifies and self.outputs_logits and int(y_support.max()) >= n_logits:
            raise ShapeError(
                f"the model outputs {n_logits} logits per example but the episode has labels up to {int(y_support.max())}"
            )

    def check_options(self, options: AdaptOptions) -> None:
        """ConfigError unless every option set in ``options`` is one this learner uses."""
        unused = [name for name in options.given() if name not in self.adapt_options]
        if unused:
            takes = ", ".join(self.adapt_options) if self.adapt_options else "none"
            raise ConfigError(f"{type(self).__name__}.adapt takes no option(s) {unused}; its options: {takes}")

    def meta_loss(self, episode: Episode) -> torch.Tensor:
        """Scalar loss of the batch, differentiable in the meta-parameters (the episode is trusted)."""
        raise NotImplementedError

    def adapt(
        self,
        x_support: torch.Tensor,
        y_support: torch.Tensor,
        support_mask: torch.Tensor | None = None,
        options: AdaptOptions = ADAPT_DEFAULTS,
    ) -> Adapted:
        """Adapt to each task of ``x_support [T, S, ...]`` (targets ``y_support [T, S, ...]``).

        ``support_mask`` bool ``[T, S]`` (or per value) leaves out missing
        examples. The options and the model's fit to the data are checked
        first; ConfigError/ShapeError name what does not fit.
        """
        self.check_options(options)
        self.check(x_support, y_support)
        return self.adapt_checked(x_support, y_support, support_mask, options)

    def adapt_checked(
        self,
        x_support: torch.Tensor,
        y_support: torch.Tensor,
        support_mask: torch.Tensor | None,
        options: AdaptOptions,
    ) -> Adapted:
        """:meth:`adapt` once the options and data have been checked."""
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

    def evaluate(self, episode: Episode, options: AdaptOptions = ADAPT_DEFAULTS) -> torch.Tensor:
        """Per-task query metric after adaptation, ``[T]``: MSE (regression) or accuracy in [0, 1].

        A task whose predictions are not finite (its adaptation diverged) gets NaN.
        """
        self.check_options(options)
        self.check(episode.x_support, episode.y_support)
        results = []
        for chunk in episode.chunks(self.chunk_size):
            adapted = self.adapt_checked(chunk.x_support, chunk.y_support, chunk.support_mask, options)
            with torch.no_grad():
                pred = adapted.predict(chunk.x_query)
            metric = task_metric(pred, chunk.y_query, chunk.query_mask)
            finite = torch.isfinite(pred).reshape(pred.shape[0], -1).all(-1)
            results.append(torch.where(finite, metric, torch.full_like(metric, math.nan)))
        return torch.cat(results)
