"""The implementations of one full meta-training step that the speed benchmark times.

Every method holds the sinusoid MLP (weights given), an Adam optimizer on its
meta-parameters, and ``meta_grad(episode)``, which fills ``.grad`` of
``parameters()`` with the meta-gradient of the mean query loss.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from metamap.bench.speed.inputs import INNER_LR, OUTER_LR, sinusoid_model
from metamap.learners import make_learner
from metamap.tasks import Episode

Params = dict[str, torch.Tensor]


class Method:
    """One way to do a full meta-training step; ``meta_grad`` fills ``.grad`` of ``parameters()``."""

    name = ""

    def __init__(self, state: Params, inner_steps: int, inner_lr: float) -> None:
        self.model: nn.Module = sinusoid_model(state)
        self.inner_steps = inner_steps
        self.inner_lr = inner_lr

    def parameters(self) -> list[nn.Parameter]:
        return list(self.model.parameters())

    def named_grads(self) -> Params:
        grads: Params = {}
        for name, param in self.model.named_parameters():
            if param.grad is None:
                raise RuntimeError(f"{self.name} left no meta-gradient on {name}")
            grads[name] = param.grad.detach().clone()
        return grads

    def meta_grad(self, episode: Episode) -> None:
        raise NotImplementedError

    def build_optimizer(self) -> None:
        self.optimizer = torch.optim.Adam(self.parameters(), lr=OUTER_LR)

    def step(self, episode: Episode) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.meta_grad(episode)
        self.optimizer.step()


class Metamap(Method):
    """``make_learner("maml", ...)`` + ``meta_backward``: vmap over tasks, one batched grad per inner step."""

    name = "metamap"

    def __init__(self, state: Params, inner_steps: int, inner_lr: float) -> None:
        super().__init__(state, inner_steps, inner_lr)
        self.learner = make_learner("maml", self.model, inner_steps=inner_steps, inner_lr=inner_lr)

    def parameters(self) -> list[nn.Parameter]:
        return list(self.learner.parameters())

    def meta_grad(self, episode: Episode) -> None:
        self.learner.meta_backward(episode)


class MetamapVmap(Metamap):
    """metamap's generic path: the same MLP seen as a plain ``nn.Sequential`` (no ``batched_forward``),
    so the learner runs ``vmap(functional_call)``. Not a peer: it measures what ``batched_forward`` saves."""

    name = "metamap_vmap"

    def __init__(self, state: Params, inner_steps: int, inner_lr: float) -> None:
        Method.__init__(self, state, inner_steps, inner_lr)
        self.model = nn.Sequential(*self.model.children())  # the same layers and weights, without batched_forward
        self.learner = make_learner("maml", self.model, inner_steps=inner_steps, inner_lr=inner_lr)


class Loop(Method):
    """Per task: functional_call forward, autograd.grad(create_graph=True), SGD step on a dict."""

    name = "loop"

    def meta_grad(self, episode: Episode) -> None:
        params: Params = dict(self.model.named_parameters())
        losses = []
        for t in range(episode.n_tasks):
            fast = params
            for _ in range(self.inner_steps):
                loss = F.mse_loss(functional_call(self.model, fast, (episode.x_support[t],)), episode.y_support[t])
                grads = torch.autograd.grad(loss, list(fast.values()), create_graph=True)
                fast = {n: w - self.inner_lr * g for (n, w), g in zip(fast.items(), grads)}
            losses.append(F.mse_loss(functional_call(self.model, fast, (episode.x_query[t],)), episode.y_query[t]))
        torch.stack(losses).mean().backward()


class Higher(Method):
    """higher's MAML idiom: a differentiable copy of SGD per task, backward inside the context."""

    name = "higher"

    def __init__(self, state: Params, inner_steps: int, inner_lr: float) -> None:
        super().__init__(state, inner_steps, inner_lr)
        self.higher: Any = importlib.import_module("higher")
        self.inner_opt = torch.optim.SGD(self.model.parameters(), lr=inner_lr)

    def meta_grad(self, episode: Episode) -> None:
        n = episode.n_tasks
        for t in range(n):
            with self.higher.innerloop_ctx(self.model, self.inner_opt, copy_initial_weights=False) as (fmodel, diffopt):
                for _ in range(self.inner_steps):
                    diffopt.step(F.mse_loss(fmodel(episode.x_support[t]), episode.y_support[t]))
                query_loss = F.mse_loss(fmodel(episode.x_query[t]), episode.y_query[t])
                (query_loss / n).backward()


class TorchoptMetaSGD(Method):
    """torchopt's OOP idiom: MetaSGD steps the module in place; state dicts restored per task."""

    name = "torchopt_metasgd"

    def __init__(self, state: Params, inner_steps: int, inner_lr: float) -> None:
        super().__init__(state, inner_steps, inner_lr)
        self.torchopt: Any = importlib.import_module("torchopt")
        self.inner_opt = self.torchopt.MetaSGD(self.model, lr=inner_lr)

    def meta_grad(self, episode: Episode) -> None:
        torchopt = self.torchopt
        net_state = torchopt.extract_state_dict(self.model, by="reference", detach_buffers=True)
        opt_state = torchopt.extract_state_dict(self.inner_opt, by="reference")
        losses = []
        for t in range(episode.n_tasks):
            for _ in range(self.inner_steps):
                self.inner_opt.step(F.mse_loss(self.model(episode.x_support[t]), episode.y_support[t]))
            losses.append(F.mse_loss(self.model(episode.x_query[t]), episode.y_query[t]))
            torchopt.recover_state_dict(self.model, net_state)
            torchopt.recover_state_dict(self.inner_opt, opt_state)
        torch.stack(losses).mean().backward()


class TorchoptVmap(Method):
    """torchopt's functional idiom: torchopt.sgd + apply_updates under torch.func.grad, vmapped over tasks."""

    name = "torchopt_vmap"

    def __init__(self, state: Params, inner_steps: int, inner_lr: float) -> None:
        super().__init__(state, inner_steps, inner_lr)
        self.torchopt: Any = importlib.import_module("torchopt")
        self.inner_opt = self.torchopt.sgd(lr=inner_lr)

    def _task_loss(
        self, params: Params, x_s: torch.Tensor, y_s: torch.Tensor, x_q: torch.Tensor, y_q: torch.Tensor
    ) -> torch.Tensor:
        def support_loss(p: Params) -> torch.Tensor:
            return F.mse_loss(functional_call(self.model, p, (x_s,)), y_s)

        opt_state = self.inner_opt.init(params)
        new = params
        for _ in range(self.inner_steps):
            grads = torch.func.grad(support_loss)(new)
            updates, opt_state = self.inner_opt.update(grads, opt_state, inplace=False)
            new = self.torchopt.apply_updates(new, updates, inplace=False)
        return F.mse_loss(functional_call(self.model, new, (x_q,)), y_q)

    def meta_grad(self, episode: Episode) -> None:
        params: Params = dict(self.model.named_parameters())
        losses = torch.func.vmap(self._task_loss, in_dims=(None, 0, 0, 0, 0))(
            params, episode.x_support, episode.y_support, episode.x_query, episode.y_query
        )
        losses.mean().backward()


CLASSES: dict[str, type[Method]] = {
    cls.name: cls for cls in (Metamap, MetamapVmap, Loop, Higher, TorchoptMetaSGD, TorchoptVmap)
}


def build_method(name: str, state: Params, inner_steps: int, inner_lr: float = INNER_LR) -> Method:
    """Method ``name`` (one of :data:`~metamap.bench.speed.inputs.METHODS`) with weights ``state`` and its Adam optimizer."""
    method = CLASSES[name](state, inner_steps, inner_lr)
    method.build_optimizer()
    return method
