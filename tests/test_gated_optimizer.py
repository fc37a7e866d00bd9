"""The gated learned optimizer: gates of 1 reproduce Adam/SGD exactly; the meta-gradient matches finite differences."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from metamap.errors import ConfigError
from metamap.learners import AdaptOptions, GatedOptimizer
from metamap.tasks.episode import Episode


def _data(seed: int, tasks: int = 2, n: int = 8, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tasks, 2 * n, 3, generator=g, dtype=dtype)
    w = torch.randn(tasks, 3, 2, generator=g, dtype=dtype)
    y = x @ w
    return Episode(x[:, :n], y[:, :n], x[:, n:], y[:, n:])


def _model(dtype=torch.float32):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).to(dtype)


@pytest.mark.parametrize("base", ["adam", "sgd"])
def test_gates_of_one_reproduce_the_base_optimizer(base):
    episode = _data(0, tasks=1)
    model = _model()
    learner = GatedOptimizer(copy.deepcopy(model), base=base, lr=0.05, inner_steps=7)
    adapted = learner.adapt(episode.x_support, episode.y_support)  # freshly built: every gate is exactly 1
    reference = copy.deepcopy(model)
    optimizer = (
        torch.optim.Adam(reference.parameters(), lr=0.05)
        if base == "adam"
        else torch.optim.SGD(reference.parameters(), lr=0.05)
    )
    for _ in range(7):
        optimizer.zero_grad()
        nn.functional.mse_loss(reference(episode.x_support[0]), episode.y_support[0]).backward()
        optimizer.step()
    for name, value in reference.named_parameters():
        torch.testing.assert_close(adapted.params[0][name], value.detach(), rtol=1e-6, atol=1e-7)
    plain = learner.adapt(episode.x_support, episode.y_support, options=AdaptOptions(gated=False))
    for name in plain.params[0]:
        torch.testing.assert_close(plain.params[0][name], adapted.params[0][name], rtol=0, atol=0)


def test_meta_gradient_matches_finite_differences():
    episode = _data(1, dtype=torch.float64)
    learner = GatedOptimizer(_model(torch.float64), base="adam", lr=0.05, inner_steps=3, gate_hidden=4).double()
    torch.manual_seed(1)
    with torch.no_grad():  # move the gate network off its zero start so every weight matters
        for p in learner.gate.parameters():
            p.add_(0.3 * torch.randn_like(p))
    loss = learner.meta_loss(episode)
    grads = torch.autograd.grad(loss, list(learner.gate.parameters()))
    h = 1e-6
    for param, grad in zip(learner.gate.parameters(), grads):
        flat, flat_grad = param.data.view(-1), grad.view(-1)
        for i in range(min(flat.numel(), 4)):
            original = float(flat[i])
            flat[i] = original + h
            up = float(learner.meta_loss(episode).detach())
            flat[i] = original - h
            down = float(learner.meta_loss(episode).detach())
            flat[i] = original
            assert float(flat_grad[i]) == pytest.approx((up - down) / (2 * h), rel=1e-4, abs=1e-8)


def test_meta_training_lowers_the_query_loss_on_new_tasks():
    learner = GatedOptimizer(_model(), base="sgd", lr=0.02, inner_steps=5)
    for p in learner.model.parameters():
        p.requires_grad_(False)
    test = _data(99, tasks=4)
    before = float(learner.evaluate(test).mean())
    optimizer = torch.optim.Adam(learner.gate.parameters(), lr=0.05)
    for step in range(30):
        optimizer.zero_grad()
        learner.meta_loss(_data(step, tasks=4)).backward()
        optimizer.step()
    after = float(learner.evaluate(test).mean())
    assert after < before


def test_dead_relu_units_keep_the_meta_gradient_finite():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].bias[:2] = -100.0  # two units never fire: their gradients are exactly zero
    learner = GatedOptimizer(model, base="adam", lr=0.05, inner_steps=3)
    learner.meta_loss(_data(2)).backward()
    assert all(torch.isfinite(p.grad).all() for p in learner.gate.parameters())


def test_bad_options():
    with pytest.raises(ConfigError, match="unknown base optimizer"):
        GatedOptimizer(_model(), base="rmsprop")
    with pytest.raises(ConfigError, match="max_gate"):
        GatedOptimizer(_model(), max_gate=1.0)


def test_built_by_name_with_typed_options():
    from metamap.learners import make_learner

    learner = make_learner("gated", nn.Linear(2, 1), base="sgd", lr=0.5, inner_steps=3)
    assert isinstance(learner, GatedOptimizer)
    assert (learner.base, learner.lr, learner.inner_steps) == ("sgd", 0.5, 3)
    with pytest.raises(
        ConfigError, match=r"learner 'gated' has no option\(s\) \['inner_lr'\]; it takes \[.*'base'.*'lr'"
    ):
        make_learner("gated", nn.Linear(2, 1), inner_lr=0.1)
