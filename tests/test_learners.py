"""Gradient-based learners: exact meta-gradients, vmap vs loop, chunking, masks, per-algorithm checks."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from metamap.errors import ShapeError
from metamap.learners import ANIL, MAML, AdaptOptions, MetaSGD, Pretrained, Reptile, make_learner
from metamap.nn import MLP, Conv4
from metamap.tasks.episode import Episode
from metamap.tasks.family import make_generator
from metamap.tasks.sinusoid import Sinusoid


def _sinusoid(n_tasks: int = 3, k: int = 4, q: int = 5, seed: int = 0, dtype=torch.float64, masks=False) -> Episode:
    ep = Sinusoid(k_shot=k, n_query=q).sample(n_tasks, make_generator(seed))
    support_mask = query_mask = None
    if masks:
        gen = make_generator(seed + 100)
        support_mask = torch.rand(n_tasks, k, generator=gen) > 0.3
        query_mask = torch.rand(n_tasks, q, generator=gen) > 0.3
        support_mask[:, 0] = True
        query_mask[:, 0] = True
    return Episode(
        ep.x_support.to(dtype),
        ep.y_support.to(dtype),
        ep.x_query.to(dtype),
        ep.y_query.to(dtype),
        support_mask=support_mask,
        query_mask=query_mask,
        meta=ep.meta,
    )


def _tiny_mlp(seed: int = 0, hidden=(4,), dtype=torch.float64) -> MLP:
    torch.manual_seed(seed)
    return MLP(1, list(hidden), 1, activation="tanh").to(dtype)


def _grads(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in module.named_parameters()}


def _meta_grads(learner, ep) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    learner.zero_grad(set_to_none=True)
    loss = learner.meta_loss(ep)
    loss.backward()
    return loss.detach(), _grads(learner)


def _mlp_forward(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Hand-written forward of MLP(1, [h], 1, tanh): independent of functional_call."""
    w0, b0, w2, b2 = params
    return torch.tanh(x @ w0.T + b0) @ w2.T + b2


# -- 1. second-order MAML against finite differences -------------------------------


def test_second_order_maml_meta_gradient_matches_finite_differences():
    ep = _sinusoid(n_tasks=3, k=4, q=5)
    learner = MAML(_tiny_mlp(), inner_steps=2, inner_lr=0.1)
    _, grads = _meta_grads(learner, ep)
    eps = 1e-6
    with torch.no_grad():
        for name, p in learner.model.named_parameters():
            flat = p.view(-1)
            for i in range(flat.numel()):
                orig = float(flat[i])
                flat[i] = orig + eps
                plus = float(learner.meta_loss(ep))
                flat[i] = orig - eps
                minus = float(learner.meta_loss(ep))
                flat[i] = orig
                fd = (plus - minus) / (2 * eps)
                g = float(grads["model." + name].view(-1)[i])
                assert abs(g - fd) <= 1e-5 * max(abs(fd), 1e-2), (name, i, g, fd)


def test_second_order_differs_from_first_order():
    ep = _sinusoid(n_tasks=3, k=4, q=5)
    second = MAML(_tiny_mlp(), inner_steps=2, inner_lr=0.1)
    first = MAML(_tiny_mlp(), inner_steps=2, inner_lr=0.1, first_order=True)
    loss2, g2 = _meta_grads(second, ep)
    loss1, g1 = _meta_grads(first, ep)
    torch.testing.assert_close(loss1, loss2, rtol=1e-12, atol=1e-12)  # same forward
    diff = max(float((g1[n] - g2[n]).abs().max()) for n in g1)
    scale = max(float(g2[n].abs().max()) for n in g2)
    assert diff > 1e-3 * scale, "first-order and second-order meta-gradients coincide"


# -- 2. FOMAML equals the stop-gradient computation --------------------------------


def test_first_order_maml_equals_query_gradient_at_adapted_weights():
    ep = _sinusoid(n_tasks=3, k=4, q=5, seed=1)
    steps, lr = 3, 0.05
    learner = MAML(_tiny_mlp(seed=2), inner_steps=steps, inner_lr=lr, first_order=True)
    _, grads = _meta_grads(learner, ep)
    theta = [p.detach() for p in learner.model.parameters()]
    expected = [torch.zeros_like(p) for p in theta]
    for t in range(ep.n_tasks):
        phi = [p.clone().requires_grad_(True) for p in theta]
        for _ in range(steps):
            loss = ((_mlp_forward(phi, ep.x_support[t]) - ep.y_support[t]) ** 2).mean()
            g = torch.autograd.grad(loss, phi)
            phi = [(p - lr * gi).detach().requires_grad_(True) for p, gi in zip(phi, g)]
        query = ((_mlp_forward(phi, ep.x_query[t]) - ep.y_query[t]) ** 2).mean()
        for acc, gi in zip(expected, torch.autograd.grad(query, phi)):
            acc += gi / ep.n_tasks
    for (name, _), exp in zip(learner.model.named_parameters(), expected):
        torch.testing.assert_close(grads["model." + name], exp, rtol=1e-10, atol=1e-12)


# -- 3. vmap path equals per-task loop path -----------------------------------------


_VARIANTS = {
    "maml": lambda m, **kw: MAML(m, **kw),
    "fomaml": lambda m, **kw: MAML(m, first_order=True, **kw),
    "metasgd": lambda m, **kw: MetaSGD(m, **kw),
    "anil": lambda m, **kw: ANIL(m, **kw),
    "maml_lslr": lambda m, **kw: MAML(m, learn_inner_lr=True, **kw),
}


@pytest.mark.parametrize("variant", sorted(_VARIANTS))
@pytest.mark.parametrize("masks", [False, True])
def test_vmap_equals_loop(variant, masks):
    ep = _sinusoid(n_tasks=3, k=4, q=5, seed=3, masks=masks)
    build = _VARIANTS[variant]
    kw = dict(inner_steps=2, inner_lr=0.05)
    vec = build(_tiny_mlp(seed=4, hidden=(6, 6)), vectorize=True, **kw)
    loop = build(_tiny_mlp(seed=4, hidden=(6, 6)), vectorize=False, **kw)
    if variant == "metasgd":  # make the alphas non-uniform so that they matter
        with torch.no_grad():
            for a, b in zip(vec.alphas.values(), loop.alphas.values()):
                a.uniform_(0.01, 0.1, generator=make_generator(9))
                b.copy_(a)
    loss_v, g_v = _meta_grads(vec, ep)
    loss_l, g_l = _meta_grads(loop, ep)
    torch.testing.assert_close(vec.query_losses(ep), loop.query_losses(ep), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(loss_v, loss_l, rtol=1e-10, atol=1e-12)
    assert g_v.keys() == g_l.keys()
    for name in g_v:
        torch.testing.assert_close(g_v[name], g_l[name], rtol=1e-9, atol=1e-12, msg=name)
    if variant in ("metasgd", "maml_lslr"):
        assert any(n.startswith(("alphas", "inner_lrs")) for n in g_v)


def test_vmap_equals_loop_classification_conv4():
    gen = make_generator(5)
    t, n_way, k = 2, 3, 2
    x = torch.randn(t, n_way * k, 1, 16, 16, generator=gen)
    y = torch.arange(n_way).repeat_interleave(k).expand(t, -1).contiguous()
    ep = Episode(x, y, x.flip(1), y.flip(1))
    results = []
    for vectorize in (True, False):
        torch.manual_seed(0)
        learner = MAML(
            Conv4(1, hidden=4, n_out=n_way, image_size=16, groups=2),
            loss="cross_entropy",
            inner_steps=1,
            inner_lr=0.1,
            vectorize=vectorize,
        )
        results.append(_meta_grads(learner, ep))
    (lv, gv), (ll, gl) = results
    torch.testing.assert_close(lv, ll, rtol=1e-5, atol=1e-6)
    for name in gv:
        torch.testing.assert_close(gv[name], gl[name], rtol=1e-4, atol=1e-5, msg=name)


# -- 4. chunked equals unchunked -------------------------------------------------------


@pytest.mark.parametrize("name", ["maml", "fomaml", "metasgd", "anil", "reptile", "pretrain"])
def test_chunked_meta_backward_and_evaluate_equal_unchunked(name):
    ep = _sinusoid(n_tasks=5, k=4, q=5, seed=6, masks=True)
    out = {}
    for chunk in (None, 2):
        learner = make_learner(name, _tiny_mlp(seed=7, hidden=(6,)), inner_steps=2, inner_lr=0.05, chunk_size=chunk)
        learner.zero_grad(set_to_none=True)
        loss = learner.meta_backward(ep)
        out[chunk] = (loss, _grads(learner), learner.evaluate(ep))
    (l0, g0, e0), (l2, g2, e2) = out[None], out[2]
    assert l0 == pytest.approx(l2, rel=1e-10)
    for n in g0:
        torch.testing.assert_close(g0[n], g2[n], rtol=1e-10, atol=1e-12, msg=n)
    assert e0.shape == (5,)
    torch.testing.assert_close(e0, e2, rtol=1e-10, atol=1e-12)


def test_meta_backward_returns_meta_loss_and_matches_its_gradient():
    ep = _sinusoid(n_tasks=4, seed=8)
    learner = MAML(_tiny_mlp(seed=1), inner_steps=1, inner_lr=0.1, chunk_size=3)
    loss, grads = _meta_grads(learner, ep)
    learner.zero_grad(set_to_none=True)
    assert learner.meta_backward(ep) == pytest.approx(float(loss), rel=1e-12)
    for n, g in _grads(learner).items():
        torch.testing.assert_close(g, grads[n], rtol=1e-10, atol=1e-12)


# -- 5. per-algorithm checks -------------------------------------------------------------


def test_meta_sgd_alphas_initialised_and_trained():
    model = _tiny_mlp(seed=3)
    learner = MetaSGD(model, inner_steps=2, inner_lr=0.03)
    params = dict(model.named_parameters())
    assert len(learner.alphas) == len(params)
    for name, p in params.items():
        alpha = learner.alphas[name.replace(".", "__")]
        assert alpha.shape == p.shape
        assert torch.all(alpha == 0.03)
    _, grads = _meta_grads(learner, _sinusoid(seed=2))
    alpha_grads = {n: g for n, g in grads.items() if n.startswith("alphas.")}
    assert len(alpha_grads) == len(params)
    for n, g in alpha_grads.items():
        assert torch.isfinite(g).all() and float(g.abs().max()) > 0, n
    assert any(p is a for p in learner.parameters() for a in learner.alphas.values())


def test_meta_sgd_with_uniform_alphas_equals_maml():
    ep = _sinusoid(seed=4)
    model = _tiny_mlp(seed=5)
    maml = MAML(copy.deepcopy(model), inner_steps=2, inner_lr=0.07)
    msgd = MetaSGD(copy.deepcopy(model), inner_steps=2, inner_lr=0.07)
    l_maml, g_maml = _meta_grads(maml, ep)
    l_msgd, g_msgd = _meta_grads(msgd, ep)
    torch.testing.assert_close(l_msgd, l_maml, rtol=1e-12, atol=1e-12)
    for n, g in g_maml.items():
        torch.testing.assert_close(g_msgd[n], g, rtol=1e-10, atol=1e-12)
    # A changed alpha changes the loss: the alphas are really used.
    with torch.no_grad():
        msgd.alphas["0__weight"].mul_(3.0)
    assert abs(float(msgd.meta_loss(ep).detach()) - float(l_maml)) > 1e-6


def test_learned_inner_lr_initialised_and_trained():
    learner = MAML(_tiny_mlp(seed=3), inner_steps=3, inner_lr=0.02, learn_inner_lr=True)
    assert set(learner.inner_lrs.keys()) == {"0__weight", "0__bias", "2__weight", "2__bias"}
    for rates in learner.inner_lrs.values():
        assert rates.shape == (3,) and torch.all(rates == 0.02)
    _, grads = _meta_grads(learner, _sinusoid(seed=2))
    for n, g in grads.items():
        if n.startswith("inner_lrs."):
            assert g.shape == (3,) and float(g.abs().min()) > 0, n


def test_anil_adapts_only_the_head():
    ep = _sinusoid(seed=5)
    model = _tiny_mlp(seed=6, hidden=(5, 5))
    learner = ANIL(model, inner_steps=3, inner_lr=0.1)
    assert learner.adapted_names == ["4.weight", "4.bias"]
    adapted = learner.adapt(ep.x_support, ep.y_support)
    for name, p in model.named_parameters():
        got = adapted.params[name]
        if name.startswith("4."):
            assert got.shape == (ep.n_tasks, *p.shape)
            assert not torch.allclose(got, p.detach().expand_as(got)), name
        else:
            assert torch.equal(got, p.detach()), name
    # The meta-gradient still reaches the body (through the head's adaptation and the query loss).
    _, grads = _meta_grads(learner, ep)
    assert float(grads["model.0.weight"].abs().max()) > 0


def test_anil_needs_a_head():
    from metamap.errors import ConfigError

    with pytest.raises(ConfigError, match="head_prefix"):
        ANIL(nn.Sequential(nn.Linear(1, 1)))


def test_reptile_gradient_is_mean_of_theta_minus_adapted():
    ep = _sinusoid(n_tasks=3, k=4, q=5, seed=9)
    steps, lr = 3, 0.05
    learner = Reptile(_tiny_mlp(seed=10), inner_steps=steps, inner_lr=lr)
    _, grads = _meta_grads(learner, ep)
    theta = [p.detach() for p in learner.model.parameters()]
    expected = [torch.zeros_like(p) for p in theta]
    x_all = torch.cat([ep.x_support, ep.x_query], 1)
    y_all = torch.cat([ep.y_support, ep.y_query], 1)
    for t in range(ep.n_tasks):
        phi = [p.clone().requires_grad_(True) for p in theta]
        for _ in range(steps):
            loss = ((_mlp_forward(phi, x_all[t]) - y_all[t]) ** 2).mean()
            g = torch.autograd.grad(loss, phi)
            phi = [(p - lr * gi).detach().requires_grad_(True) for p, gi in zip(phi, g)]
        for acc, th, ph in zip(expected, theta, phi):
            acc += (th - ph.detach()) / ep.n_tasks
    for (name, _), exp in zip(learner.model.named_parameters(), expected):
        assert float(exp.abs().max()) > 0
        torch.testing.assert_close(grads["model." + name], exp, rtol=1e-10, atol=1e-12)


def test_pretrained_meta_loss_is_pooled_mse():
    ep = _sinusoid(n_tasks=3, k=4, q=5, seed=11)
    model = _tiny_mlp(seed=12)
    learner = Pretrained(model, inner_steps=2, inner_lr=0.05)
    x = torch.cat([ep.x_support, ep.x_query], 1).reshape(-1, 1)
    y = torch.cat([ep.y_support, ep.y_query], 1).reshape(-1, 1)
    expected = ((model(x) - y) ** 2).mean()
    torch.testing.assert_close(learner.meta_loss(ep), expected, rtol=1e-12, atol=1e-12)
    # Its adapt fine-tunes: after steps the support loss falls.
    before = ((model(ep.x_support) - ep.y_support) ** 2).mean()
    adapted = learner.adapt(ep.x_support, ep.y_support, options=AdaptOptions(steps=5))
    after = ((adapted.predict(ep.x_support) - ep.y_support) ** 2).mean()
    assert float(after.detach()) < float(before.detach())


def test_adapt_zero_steps_returns_meta_parameters():
    ep = _sinusoid(seed=1)
    model = _tiny_mlp(seed=2)
    learner = MAML(model, inner_steps=2, inner_lr=0.1)
    pred = learner.adapt(ep.x_support, ep.y_support, options=AdaptOptions(steps=0)).predict(ep.x_query)
    torch.testing.assert_close(pred, model(ep.x_query), rtol=1e-12, atol=1e-12)


def test_maml_adapt_matches_hand_sgd_and_evaluate_is_query_mse():
    ep = _sinusoid(n_tasks=2, seed=13)
    steps, lr = 2, 0.05
    learner = MAML(_tiny_mlp(seed=14), inner_steps=steps, inner_lr=lr)
    adapted = learner.adapt(ep.x_support, ep.y_support)
    theta = [p.detach() for p in learner.model.parameters()]
    mses = []
    for t in range(ep.n_tasks):
        phi = [p.clone().requires_grad_(True) for p in theta]
        for _ in range(steps):
            loss = ((_mlp_forward(phi, ep.x_support[t]) - ep.y_support[t]) ** 2).mean()
            g = torch.autograd.grad(loss, phi)
            phi = [(p - lr * gi).detach().requires_grad_(True) for p, gi in zip(phi, g)]
        for (name, _), ph in zip(learner.model.named_parameters(), phi):
            torch.testing.assert_close(adapted.params[name][t], ph.detach(), rtol=1e-10, atol=1e-12)
        with torch.no_grad():
            mses.append(((_mlp_forward(phi, ep.x_query[t]) - ep.y_query[t]) ** 2).mean())
    torch.testing.assert_close(learner.evaluate(ep), torch.stack(mses), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["maml", "fomaml", "metasgd", "anil", "reptile", "pretrain"])
def test_meta_loss_under_no_grad_gives_the_same_value(name):
    # Validation losses are computed under torch.no_grad(); several inner steps must still work there.
    ep = _sinusoid(seed=15)
    learner = make_learner(name, _tiny_mlp(seed=16), inner_steps=3, inner_lr=0.05)
    expected = learner.meta_loss(ep).detach()
    with torch.no_grad():
        got = learner.meta_loss(ep)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_few_adam_steps_reduce_maml_meta_loss_on_a_fixed_batch():
    ep = _sinusoid(n_tasks=4, k=5, q=5, seed=30, dtype=torch.float32)
    torch.manual_seed(0)
    learner = MAML(MLP(1, [16], 1), inner_steps=1, inner_lr=0.01)
    opt = torch.optim.Adam(learner.parameters(), lr=1e-2)
    before = float(learner.meta_loss(ep).detach())
    for _ in range(15):
        opt.zero_grad()
        learner.meta_backward(ep)
        opt.step()
    after = float(learner.meta_loss(ep).detach())
    assert after < 0.9 * before, (before, after)


# -- 6. masks ----------------------------------------------------------------------------


def _with(ep: Episode, **changes) -> Episode:
    fields = dict(
        x_support=ep.x_support,
        y_support=ep.y_support,
        x_query=ep.x_query,
        y_query=ep.y_query,
        support_mask=ep.support_mask,
        query_mask=ep.query_mask,
    )
    fields.update(changes)
    return Episode(**fields)


@pytest.mark.parametrize("name", ["maml", "metasgd", "anil", "pretrain"])
def test_masked_support_example_does_not_change_adaptation(name):
    ep = _sinusoid(n_tasks=2, k=4, q=5, seed=17)
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[0, 2] = False
    mask[1, 0] = False
    masked = _with(ep, support_mask=mask)
    xs, ys = ep.x_support.clone(), ep.y_support.clone()
    xs[0, 2], ys[0, 2], xs[1, 0], ys[1, 0] = 3.3, -40.0, -1.7, 25.0
    changed = _with(masked, x_support=xs, y_support=ys)
    learner = make_learner(name, _tiny_mlp(seed=18), inner_steps=2, inner_lr=0.05)
    a = learner.adapt(masked.x_support, masked.y_support, masked.support_mask)
    b = learner.adapt(changed.x_support, changed.y_support, changed.support_mask)
    c = learner.adapt(changed.x_support, changed.y_support, None)  # unmasked: the change does matter
    for n in a.params:
        torch.testing.assert_close(a.params[n], b.params[n], rtol=1e-12, atol=1e-14)
    assert any(not torch.allclose(a.params[n], c.params[n]) for n in a.params)
    # The meta-loss and its gradient ignore the masked examples as well.
    la, ga = _meta_grads(learner, masked)
    lb, gb = _meta_grads(learner, changed)
    torch.testing.assert_close(la, lb, rtol=1e-12, atol=1e-14)
    for n in ga:
        torch.testing.assert_close(ga[n], gb[n], rtol=1e-10, atol=1e-14)


def test_masked_support_example_equals_dropping_it():
    ep = _sinusoid(n_tasks=1, k=4, q=5, seed=19)
    mask = torch.tensor([[True, False, True, True]])
    learner = MAML(_tiny_mlp(seed=20), inner_steps=2, inner_lr=0.05)
    a = learner.adapt(ep.x_support, ep.y_support, mask)
    keep = [0, 2, 3]
    b = learner.adapt(ep.x_support[:, keep], ep.y_support[:, keep])
    for n in a.params:
        torch.testing.assert_close(a.params[n], b.params[n], rtol=1e-10, atol=1e-12)


def test_reptile_mask_excludes_support_and_query_examples():
    ep = _sinusoid(n_tasks=2, k=4, q=5, seed=21)
    smask = torch.ones(2, 4, dtype=torch.bool)
    qmask = torch.ones(2, 5, dtype=torch.bool)
    smask[0, 1] = False
    qmask[1, 3] = False
    masked = _with(ep, support_mask=smask, query_mask=qmask)
    xs, xq = ep.x_support.clone(), ep.x_query.clone()
    yq = ep.y_query.clone()
    xs[0, 1], xq[1, 3], yq[1, 3] = 4.0, -4.0, 30.0
    changed = _with(masked, x_support=xs, x_query=xq, y_query=yq)
    learner = Reptile(_tiny_mlp(seed=22), inner_steps=2, inner_lr=0.05)
    la, ga = _meta_grads(learner, masked)
    lb, gb = _meta_grads(learner, changed)
    torch.testing.assert_close(la, lb, rtol=1e-12, atol=1e-14)
    for n in ga:
        torch.testing.assert_close(ga[n], gb[n], rtol=1e-10, atol=1e-14)


def test_query_mask_excludes_examples_from_loss_and_metric():
    ep = _sinusoid(n_tasks=2, k=4, q=5, seed=23)
    qmask = torch.tensor([[True, False, True, True, False], [True, True, True, True, True]])
    masked = _with(ep, query_mask=qmask)
    yq = ep.y_query.clone()
    yq[0, 1], yq[0, 4] = 50.0, -50.0
    changed = _with(masked, y_query=yq)
    learner = MAML(_tiny_mlp(seed=24), inner_steps=1, inner_lr=0.05)
    torch.testing.assert_close(learner.meta_loss(masked), learner.meta_loss(changed), rtol=1e-12, atol=1e-14)
    metric = learner.evaluate(changed)
    pred = learner.adapt(ep.x_support, ep.y_support).predict(ep.x_query).detach()
    err = (pred - yq).squeeze(-1) ** 2
    expected = torch.stack([err[0, [0, 2, 3]].mean(), err[1].mean()])
    torch.testing.assert_close(metric, expected, rtol=1e-10, atol=1e-12)
    assert float(learner.evaluate(_with(ep, y_query=yq))[0]) > 10 * float(metric[0])


def _multi_output_episode(seed: int) -> Episode:
    """Two tasks, 4 support / 3 query examples, 2 inputs -> 3 outputs (a short forecast)."""
    gen = make_generator(seed)
    x = torch.randn(2, 7, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(2, 7, 3, generator=gen, dtype=torch.float64)
    return Episode(x[:, :4], y[:, :4], x[:, 4:], y[:, 4:])


@pytest.mark.parametrize("name", ["maml", "fomaml", "metasgd", "anil", "reptile", "pretrain"])
def test_per_value_mask_ignores_masked_values_and_vmap_equals_loop(name):
    ep = _multi_output_episode(seed=25)
    smask = torch.ones(2, 4, 3, dtype=torch.bool)
    qmask = torch.ones(2, 3, 3, dtype=torch.bool)
    smask[0, 1, 2] = smask[1, 3, 0] = False
    qmask[1, 0, 1] = False
    masked = _with(ep, support_mask=smask, query_mask=qmask)
    ys, yq = ep.y_support.clone(), ep.y_query.clone()
    ys[0, 1, 2], ys[1, 3, 0], yq[1, 0, 1] = 40.0, -30.0, 25.0
    changed = _with(masked, y_support=ys, y_query=yq)
    model = MLP(2, [5], 3, activation="tanh").double()
    learner = make_learner(name, model, inner_steps=2, inner_lr=0.05)
    la, ga = _meta_grads(learner, masked)
    lb, gb = _meta_grads(learner, changed)
    torch.testing.assert_close(la, lb, rtol=1e-12, atol=1e-14)
    for n in ga:
        torch.testing.assert_close(ga[n], gb[n], rtol=1e-10, atol=1e-14)
    assert float(_meta_grads(learner, _with(changed, support_mask=None, query_mask=None))[0]) > 2 * float(la)
    loop = make_learner(name, copy.deepcopy(model), inner_steps=2, inner_lr=0.05, vectorize=False)
    lc, gc = _meta_grads(loop, masked)
    torch.testing.assert_close(la, lc, rtol=1e-10, atol=1e-12)
    for n in ga:
        torch.testing.assert_close(ga[n], gc[n], rtol=1e-8, atol=1e-10)


def test_per_value_mask_metric_is_mean_over_valid_values():
    ep = _multi_output_episode(seed=26)
    qmask = torch.ones(2, 3, 3, dtype=torch.bool)
    qmask[0, 2] = False
    qmask[1, 1, 0] = False
    learner = MAML(MLP(2, [5], 3).double(), inner_steps=1, inner_lr=0.05)
    metric = learner.evaluate(_with(ep, query_mask=qmask))
    err = (learner.adapt(ep.x_support, ep.y_support).predict(ep.x_query).detach() - ep.y_query) ** 2
    expected = torch.stack([err[0][qmask[0]].mean(), err[1][qmask[1]].mean()])
    torch.testing.assert_close(metric, expected, rtol=1e-10, atol=1e-12)


def test_mask_shape_errors_name_both_accepted_shapes():
    ep = _multi_output_episode(seed=27)
    with pytest.raises(ShapeError, match=r"bool\[2, 4\] or bool\[2, 4, 3\]"):
        _with(ep, support_mask=torch.ones(2, 4, 2, dtype=torch.bool))
    with pytest.raises(ShapeError, match="both be per example or both per value"):
        _with(ep, support_mask=torch.ones(2, 4, 3, dtype=torch.bool), query_mask=torch.ones(2, 3, dtype=torch.bool))
