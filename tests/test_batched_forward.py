"""A backbone's own ``batched_forward`` must equal the generic ``vmap(functional_call)`` path."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, vmap

from metamap.learners import make_learner
from metamap.nn import MLP
from metamap.tasks import Sinusoid, make_generator


def _vmapped(model, params, x, batched_keys):
    in_dims = ({k: (0 if k in batched_keys else None) for k in params}, 0)
    return vmap(lambda p, xx: functional_call(model, p, (xx,)), in_dims=in_dims)(params, x)


@pytest.mark.parametrize("batched_prefixes", [("0.", "2.", "4."), ("4.",), ("0.",)])
def test_mlp_batched_forward_equals_vmap(batched_prefixes):
    torch.manual_seed(0)
    model = MLP(3, [8, 8], 2, activation="tanh")
    x = torch.randn(4, 5, 3)
    params = {
        k: (v.detach() + 0.1 * torch.randn(4, *v.shape) if k.startswith(batched_prefixes) else v.detach())
        for k, v in model.named_parameters()
    }
    batched = {k for k in params if k.startswith(batched_prefixes)}
    torch.testing.assert_close(model.batched_forward(params, x), _vmapped(model, params, x, batched), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["maml", "fomaml", "metasgd", "anil", "reptile"])
def test_learners_on_mlp_equal_the_generic_vmap_path(name):
    torch.manual_seed(1)
    mlp = MLP(1, [16, 16], 1).double()
    plain = nn.Sequential(*[layer for layer in MLP(1, [16, 16], 1).double()])  # no batched_forward: vmap path
    plain.load_state_dict(mlp.state_dict())
    plain.head_prefix = mlp.head_prefix
    episode = Sinusoid().sample(6, make_generator(3))
    episode = type(episode)(
        **{f: getattr(episode, f).double() for f in ("x_support", "y_support", "x_query", "y_query")}
    )
    results = []
    for model in (mlp, plain):
        learner = make_learner(name, model, inner_steps=2)
        loss = learner.meta_loss(episode)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in learner.parameters()]))
    assert hasattr(mlp, "batched_forward") and not hasattr(plain, "batched_forward")
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-12, atol=1e-12)
    for fast, generic in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(fast, generic, rtol=1e-10, atol=1e-12)
