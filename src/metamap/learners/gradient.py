"""The inner loop shared by the gradient-based learners (MAML, Meta-SGD, ANIL, Reptile).

The model is called functionally (``torch.func.functional_call``) on a dict of
parameters. For a batch of T tasks the adapted ("fast") parameters carry a
leading task dim ``[T, *param_shape]``; the forward pass is ``vmap``-ed over
tasks (or, where the backbone offers ``batched_forward(params, x)``, such as
:class:`metamap.nn.MLP`, run by the backbone itself with batched matrix
products, which avoids vmap's per-operation overhead), and one
``torch.autograd.grad`` of the summed per-task support losses gives every
task's own gradient at once (task t's loss depends only on slice t). With ``create_graph=True`` the steps stay differentiable, which is what
second-order MAML needs. The same code runs per task without ``vmap``
(``vectorize=False``), the reference the tests compare against.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import torch
from torch import nn
from torch.func import functional_call, vmap

from metamap.errors import ConfigError
from metamap.learners.base import AdaptOptions, MetaLearner
from metamap.learners.losses import LossFn, per_task_loss
from metamap.tasks.episode import Episode

Params = dict[str, torch.Tensor]


@runtime_checkable
class BatchedForward(Protocol):
    """A backbone with its own batched path: params ``[T, ...]`` (or shared) and ``x [T, N, ...]``."""

    def batched_forward(self, params: Params, x: torch.Tensor) -> torch.Tensor: ...


class GradientLearner(MetaLearner):
    """Base of learners that adapt by gradient steps on the support set.

    Args:
        model: any ``nn.Module`` mapping ``[N, *x_shape]`` to ``[N, *y_shape]``
            (or logits ``[N, n_way]``); no running statistics (use GroupNorm).
        loss: ``"mse"``, ``"mae"``, ``"huber"`` (regression), ``"cross_entropy"``
            (classification) or a callable ``loss(prediction, target, mask) -> scalar``.
        inner_steps: gradient steps on the support set during meta-training.
        inner_lr: step size of the inner SGD.
        adapt_prefixes: names of the parameters adapted in the inner loop
            (prefix match); ``None`` adapts all of them.
        chunk_size: tasks per ``vmap`` call in ``meta_backward`` and
            ``evaluate`` (bounded memory); ``None`` does all tasks at once.
        vectorize: ``False`` loops over tasks instead of ``vmap`` (reference path).
    """

    adapt_options = ("steps",)

    def __init__(
        self,
        model: nn.Module,
        *,
        loss: str | LossFn = "mse",
        inner_steps: int = 1,
        inner_lr: float = 0.01,
        adapt_prefixes: Iterable[str] | None = None,
        chunk_size: int | None = None,
        vectorize: bool = True,
    ) -> None:
        super().__init__(model, loss=loss, chunk_size=chunk_size)
        if inner_steps < 0:
            raise ConfigError(f"inner_steps must be >= 0, got {inner_steps}")
        self.inner_steps = inner_steps
        self.inner_lr = inner_lr
        self.vectorize = vectorize
        names = [n for n, _ in model.named_parameters()]
        prefixes = tuple(adapt_prefixes) if adapt_prefixes is not None else ("",)
        self.adapted_names = [n for n in names if n.startswith(prefixes)]
        if not self.adapted_names:
            raise ConfigError(f"adapt_prefixes {prefixes} match no parameter of the model; it has {names}")

    # -- hooks for subclasses -------------------------------------------------

    def step_size(self, name: str, step: int) -> torch.Tensor | float:
        """Inner learning rate for parameter ``name`` at ``step`` (scalar or param-shaped)."""
        return self.inner_lr

    def second_order(self) -> bool:
        """Whether meta-gradients flow through the inner gradients."""
        return True

    # -- the functional core ----------------------------------------------------

    def meta_params(self) -> Params:
        return dict(self.model.named_parameters())

    def forward_with(self, params: Params, x: torch.Tensor, batched: bool) -> torch.Tensor:
        """Model output with ``params``; batched: params ``[T, ...]`` and ``x [T, N, ...]``."""
        buffers = dict(self.model.named_buffers())

        def call(p: Params, inputs: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = functional_call(self.model, {**buffers, **p}, (inputs,))
            return out

        if not batched:
            return call(params, x)
        if isinstance(self.model, BatchedForward):  # the backbone's own batched path (faster than vmap)
            return self.model.batched_forward(params, x)
        in_dims = ({k: (0 if k in self.adapted_names else None) for k in params}, 0)
        return vmap(call, in_dims=in_dims)(params, x)

    def inner_loop(
        self,
        params: Params,
        x: torch.Tensor,
        y: torch.Tensor,
        mask: torch.Tensor | None,
        steps: int,
        *,
        batched: bool,
        keep_graph: bool,
    ) -> Params:
        """Adapt ``params`` to the support set; returns the full parameter dict.

        Batched: ``x [T, S, ...]`` and the adapted entries get a leading T dim.
        ``keep_graph``: the result stays connected to ``params`` (meta-training);
        the inner gradients are differentiated only if ``second_order()``.
        """
        create_graph = keep_graph and self.second_order()
        # The whole loop runs with grad enabled, set-up and updates included: under an
        # outer torch.no_grad() (validation losses) every step must still differentiate
        # the support loss w.r.t. ``fast``.
        with torch.enable_grad():
            fast = {}
            for name in self.adapted_names:
                p = params[name]
                p = p.expand(x.shape[0], *p.shape) if batched else p
                fast[name] = p if keep_graph else p.detach().requires_grad_(True)
            frozen = {k: v for k, v in params.items() if k not in fast}
            for step in range(steps):
                pred = self.forward_with({**frozen, **fast}, x, batched)
                # one expression: the per-task losses are not kept alive through the backward pass
                loss = (per_task_loss(self.loss, pred, y, mask) if batched else self.loss(pred, y, mask)).sum()
                grads = torch.autograd.grad(loss, list(fast.values()), create_graph=create_graph)
                fast = {
                    name: self._step(name, step, value, grad, keep_graph)
                    for (name, value), grad in zip(fast.items(), grads, strict=True)
                }
        return {**frozen, **fast}

    def _step(self, name: str, step: int, value: torch.Tensor, grad: torch.Tensor, keep_graph: bool) -> torch.Tensor:
        new = value - self.step_size(name, step) * grad
        return new if keep_graph else new.detach().requires_grad_(True)

    # -- the protocol --------------------------------------------------------

    def query_losses(self, episode: Episode) -> torch.Tensor:
        """Per-task query loss after ``inner_steps`` steps, connected to the meta-parameters: ``[T]``."""
        params = self.meta_params()
        if self.vectorize:
            fast = self.inner_loop(
                params,
                episode.x_support,
                episode.y_support,
                episode.support_mask,
                self.inner_steps,
                batched=True,
                keep_graph=True,
            )
            pred = self.forward_with(fast, episode.x_query, batched=True)
            return per_task_loss(self.loss, pred, episode.y_query, episode.query_mask)
        losses = []
        for t in range(episode.n_tasks):
            task = episode.select(slice(t, t + 1))
            fast = self.inner_loop(
                params,
                task.x_support[0],
                task.y_support[0],
                _first(task.support_mask),
                self.inner_steps,
                batched=False,
                keep_graph=True,
            )
            pred = self.forward_with(fast, task.x_query[0], batched=False)
            losses.append(self.loss(pred, task.y_query[0], _first(task.query_mask)))
        return torch.stack(losses)

    def meta_loss(self, episode: Episode) -> torch.Tensor:
        """Mean query loss over the tasks after adaptation (differentiable)."""
        return self.query_losses(episode).mean()

    def adapt_checked(
        self,
        x_support: torch.Tensor,
        y_support: torch.Tensor,
        support_mask: torch.Tensor | None,
        options: AdaptOptions,
    ) -> AdaptedParams:
        """Fine-tune on each task's support set ``[T, S, ...]``; ``options.steps`` defaults to ``inner_steps``."""
        steps = self.inner_steps if options.steps is None else options.steps
        fast = self.inner_loop(
            {k: v.detach() for k, v in self.meta_params().items()},
            x_support,
            y_support,
            support_mask,
            steps,
            batched=True,
            keep_graph=False,
        )
        return AdaptedParams(self, {k: v.detach() for k, v in fast.items()})


class AdaptedParams:
    """Per-task adapted parameters; ``predict(x [T, Q, ...]) -> [T, Q, ...]``."""

    def __init__(self, learner: GradientLearner, params: Params) -> None:
        self.learner = learner
        self.params = params

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.learner.forward_with(self.params, x, batched=True)


def _first(mask: torch.Tensor | None) -> torch.Tensor | None:
    return None if mask is None else mask[0]
