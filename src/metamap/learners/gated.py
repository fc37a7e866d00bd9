"""A gated learned optimizer: a small network scales each step of Adam or SGD.

The update of every adapted parameter element is::

    theta <- theta - gamma * step,      gamma = max_gate * sigmoid(g(features))

where ``step`` is the base optimizer's step (``lr * grad`` for SGD;
``lr * m_hat / (sqrt(v_hat) + eps)`` for Adam, exactly as ``torch.optim``
computes it) and ``g`` is an MLP applied element-wise to a context of five
features: the element's gradient, base step and value, each divided by the
root-mean-square of its tensor, the log10 of the tensor's gradient RMS, and
the step's position ``t / steps``. The last layer of ``g`` starts at zero, so
with the default ``max_gate = 2`` every gate starts at exactly 1 and the
optimizer starts as its base optimizer.

Meta-training (``meta_loss``) unrolls ``inner_steps`` steps on each task's
support set functionally (``torch.func.functional_call``) and differentiates
the query loss after them through the whole unroll (second order) with
respect to the gate network (and the initialisation too with
``learn_init=True``). The class follows the learner protocol
(``meta_loss``, ``adapt``, ``Adapted.predict``), so any domain can use it.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call

from metamap.errors import ConfigError
from metamap.learners.base import AdaptOptions, MetaLearner
from metamap.learners.losses import LossFn
from metamap.tasks.episode import Episode

Params = dict[str, torch.Tensor]
BASES = ("adam", "sgd")
N_FEATURES = 5


class GatedOptimizer(MetaLearner):
    """Meta-learned per-parameter gates on a base optimizer's steps.

    Args:
        model: the backbone ``[N, *x] -> [N, *y]``; its parameters are the
            initialisation every task starts from.
        loss: a built-in loss name (``"mse"``, ``"cross_entropy"``, ...) or a callable
            ``loss(prediction, target, mask) -> scalar``.
        base: ``"adam"`` or ``"sgd"``.
        lr: the base optimizer's learning rate.
        inner_steps: unrolled steps in meta-training (and the default in ``adapt``).
        betas, eps: Adam's constants.
        gate_hidden: width of the gate network.
        max_gate: gates lie in ``(0, max_gate)``.
        learn_init: also meta-learn the initialisation (else it stays fixed).
    """

    adapt_options = ("steps", "gated")

    def __init__(
        self,
        model: nn.Module,
        *,
        loss: str | LossFn = "mse",
        base: str = "adam",
        lr: float = 1e-2,
        inner_steps: int = 5,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        gate_hidden: int = 16,
        max_gate: float = 2.0,
        learn_init: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(model, loss=loss, chunk_size=chunk_size)
        if base not in BASES:
            raise ConfigError(f"unknown base optimizer {base!r}; expected one of {', '.join(BASES)}")
        if lr <= 0 or inner_steps < 0 or max_gate <= 1:
            raise ConfigError(
                f"expected lr > 0, inner_steps >= 0 and max_gate > 1 (gates start at 1); "
                f"got lr={lr}, inner_steps={inner_steps}, max_gate={max_gate}"
            )
        self.base, self.lr, self.inner_steps = base, lr, inner_steps
        self.betas, self.eps, self.max_gate, self.learn_init = betas, eps, max_gate, learn_init
        self.gate = nn.Sequential(nn.Linear(N_FEATURES, gate_hidden), nn.Tanh(), nn.Linear(gate_hidden, 1))
        last = self.gate[2]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.constant_(last.bias, -math.log(max_gate - 1.0))  # sigmoid = 1 / max_gate

    # -- the functional unroll -------------------------------------------------

    def gates(self, grad: torch.Tensor, step: torch.Tensor, value: torch.Tensor, t: int, steps: int) -> torch.Tensor:
        """Gates in ``(0, max_gate)`` of the shape of ``value``."""

        def rms(v: torch.Tensor) -> torch.Tensor:
            return v.pow(2).mean().add(1e-16).sqrt()

        g_rms = rms(grad)
        features = torch.stack(
            [
                grad / g_rms,
                step / rms(step),
                value / rms(value),
                torch.log10(g_rms).expand_as(value),
                torch.full_like(value, t / max(steps, 1)),
            ],
            dim=-1,
        )
        return self.max_gate * torch.sigmoid(self.gate(features).squeeze(-1))

    def unroll(
        self,
        params: Params,
        x: torch.Tensor,
        y: torch.Tensor,
        mask: torch.Tensor | None,
        steps: int,
        *,
        keep_graph: bool,
        gated: bool = True,
        x_eval: torch.Tensor | None = None,
        y_eval: torch.Tensor | None = None,
    ) -> tuple[Params, list[float]]:
        """Run ``steps`` gated steps on one task (``x [S, ...]``); returns the parameters and, when
        ``x_eval``/``y_eval`` are given, the loss on them before each step and after the last (``steps + 1`` floats).

        ``gated=False`` runs the base optimizer alone (every gate 1).
        """
        if (x_eval is None) != (y_eval is None):
            raise ConfigError("GatedOptimizer.unroll: x_eval and y_eval go together; got only one of them")
        beta1, beta2 = self.betas
        curve: list[float] = []
        with torch.enable_grad():
            # A fixed initialisation (detached) still needs gradients for the inner steps.
            fast = {
                k: (v if keep_graph and v.requires_grad else v.detach().requires_grad_(True)) for k, v in params.items()
            }
            m = {k: torch.zeros_like(v) for k, v in fast.items()}
            v2 = {k: torch.zeros_like(v) for k, v in fast.items()}
            for t in range(steps + 1):
                if x_eval is not None and y_eval is not None:
                    with torch.no_grad():
                        pred = functional_call(self.model, fast, (x_eval,))
                        curve.append(float(self.loss(pred, y_eval, None)))
                if t == steps:
                    break
                loss = self.loss(functional_call(self.model, fast, (x,)), y, mask)
                grads = torch.autograd.grad(loss, list(fast.values()), create_graph=keep_graph)
                new = {}
                for (name, value), grad in zip(fast.items(), grads, strict=True):
                    if self.base == "sgd":
                        step = self.lr * grad
                    else:
                        m[name] = beta1 * m[name] + (1 - beta1) * grad
                        v2[name] = beta2 * v2[name] + (1 - beta2) * grad * grad
                        m_hat = m[name] / (1 - beta1 ** (t + 1))
                        v_hat = v2[name] / (1 - beta2 ** (t + 1))
                        # clamp: sqrt's derivative at an exactly zero gradient history (a dead ReLU unit)
                        # is infinite and would turn the meta-gradient into NaN; above the clamp it is Adam exactly
                        root = v_hat.clamp(min=torch.finfo(v_hat.dtype).tiny).sqrt()
                        step = self.lr * m_hat / (root + self.eps)
                    gamma = self.gates(grad, step, value, t, steps) if gated else 1.0
                    updated = value - gamma * step
                    new[name] = updated if keep_graph else updated.detach().requires_grad_(True)
                if not keep_graph:
                    m = {k: u.detach() for k, u in m.items()}
                    v2 = {k: u.detach() for k, u in v2.items()}
                fast = new
        return fast, curve

    def init_params(self, detach: bool) -> Params:
        params: Params = dict(self.model.named_parameters())
        return {k: v.detach() for k, v in params.items()} if detach else params

    # -- the protocol --------------------------------------------------------

    def meta_loss(self, episode: Episode) -> torch.Tensor:
        """Mean query loss after ``inner_steps`` gated steps, differentiable in the gate network."""
        losses = []
        for k in range(episode.n_tasks):
            s_mask = None if episode.support_mask is None else episode.support_mask[k]
            q_mask = None if episode.query_mask is None else episode.query_mask[k]
            fast, _ = self.unroll(
                self.init_params(detach=not self.learn_init),
                episode.x_support[k],
                episode.y_support[k],
                s_mask,
                self.inner_steps,
                keep_graph=True,
            )
            pred = functional_call(self.model, fast, (episode.x_query[k],))
            losses.append(self.loss(pred, episode.y_query[k], q_mask))
        return torch.stack(losses).mean()

    def adapt_checked(
        self,
        x_support: torch.Tensor,
        y_support: torch.Tensor,
        support_mask: torch.Tensor | None,
        options: AdaptOptions,
    ) -> GatedAdapted:
        """Adapt to each task of ``x_support [T, S, ...]``; ``options.gated=False``: the plain base optimizer."""
        steps = self.inner_steps if options.steps is None else options.steps
        gated = options.gated is not False
        per_task = []
        for k in range(x_support.shape[0]):
            mask = None if support_mask is None else support_mask[k]
            fast, _ = self.unroll(
                self.init_params(True), x_support[k], y_support[k], mask, steps, keep_graph=False, gated=gated
            )
            per_task.append({n: p.detach() for n, p in fast.items()})
        return GatedAdapted(self, per_task)


class GatedAdapted:
    """Per-task adapted parameters; ``predict(x [T, Q, ...]) -> [T, Q, ...]``."""

    def __init__(self, learner: GatedOptimizer, params: list[Params]) -> None:
        self.learner = learner
        self.params = params

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([functional_call(self.learner.model, p, (x[k],)) for k, p in enumerate(self.params)])
