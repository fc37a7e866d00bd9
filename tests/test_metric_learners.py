"""Prototypical and Matching Networks against hand computations; masks; a few training steps."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metamap.errors import ShapeError
from metamap.learners import MatchingNet, ProtoNet, make_learner
from metamap.tasks.episode import Episode
from metamap.tasks.family import make_generator


def _identity_linear(d: int = 2) -> nn.Linear:
    """A Linear embedding that is the identity map (has parameters, unlike nn.Identity)."""
    lin = nn.Linear(d, d).double()
    with torch.no_grad():
        lin.weight.copy_(torch.eye(d, dtype=torch.float64))
        lin.bias.zero_()
    return lin


def _t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


# Two 3-way tasks with 2-D points; task 1's last support example is masked out.
X_SUPPORT = _t([[[0, 0], [2, 0], [0, 4], [4, 4]], [[1, 1], [-1, -1], [2, -2], [10, 10]]])
Y_SUPPORT = torch.tensor([[0, 0, 1, 2], [0, 1, 2, 0]])
SUPPORT_MASK = torch.tensor([[True, True, True, True], [True, True, True, False]])
X_QUERY = _t([[[1, 1], [3, 4]], [[0, 0], [3, -1]]])
Y_QUERY = torch.tensor([[0, 2], [1, 2]])
# Prototypes by hand: task 0: (1, 0), (0, 4), (4, 4); task 1: (1, 1), (-1, -1), (2, -2).
# Negative squared distances of the queries to them, by hand:
PROTO_LOGITS = _t([[[-1, -10, -18], [-20, -9, -1]], [[-2, -2, -8], [-8, -16, -2]]])


def _proto_episode(**changes) -> Episode:
    fields = dict(x_support=X_SUPPORT, y_support=Y_SUPPORT, x_query=X_QUERY, y_query=Y_QUERY, support_mask=SUPPORT_MASK)
    fields.update(changes)
    return Episode(**fields)


# -- Prototypical Networks -------------------------------------------------------


def test_protonet_logits_match_hand_computation():
    learner = ProtoNet(_identity_linear())
    adapted = learner.adapt(X_SUPPORT, Y_SUPPORT, SUPPORT_MASK)
    torch.testing.assert_close(
        adapted.support.class_means(), _t([[[1, 0], [0, 4], [4, 4]], [[1, 1], [-1, -1], [2, -2]]])
    )
    logits = adapted.predict(X_QUERY)
    torch.testing.assert_close(logits, PROTO_LOGITS, rtol=0, atol=1e-12)


def test_protonet_meta_loss_is_cross_entropy_of_hand_logits():
    learner = ProtoNet(_identity_linear())
    ep = _proto_episode()
    expected = F.cross_entropy(PROTO_LOGITS.reshape(-1, 3), Y_QUERY.reshape(-1))
    torch.testing.assert_close(learner.meta_loss(ep), expected, rtol=1e-12, atol=1e-12)


def test_protonet_masked_support_example_is_ignored():
    learner = ProtoNet(_identity_linear())
    moved = X_SUPPORT.clone()
    moved[1, 3] = _t([-50, 80])
    a = learner.adapt(X_SUPPORT, Y_SUPPORT, SUPPORT_MASK).predict(X_QUERY)
    b = learner.adapt(moved, Y_SUPPORT, SUPPORT_MASK).predict(X_QUERY)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # Unmasked, the far-away example drags task 1's class-0 prototype to (5.5, 5.5).
    unmasked = learner.adapt(X_SUPPORT, Y_SUPPORT, None).support.class_means()
    torch.testing.assert_close(unmasked[1, 0], _t([5.5, 5.5]))


def test_protonet_evaluate_accuracy_and_query_mask():
    learner = ProtoNet(_identity_linear())
    # Task 1's first query (0, 0) is equidistant from classes 0 and 1; give it a label the
    # argmax cannot pick so that task 1 has one wrong answer out of two.
    wrong = Y_QUERY.clone()
    wrong[1, 0] = 2
    acc = learner.evaluate(_proto_episode(y_query=wrong))
    torch.testing.assert_close(acc, _t([1.0, 0.5]))
    masked = learner.evaluate(_proto_episode(y_query=wrong, query_mask=torch.tensor([[True, True], [False, True]])))
    torch.testing.assert_close(masked, _t([1.0, 1.0]))


def test_parameter_free_embedding_works():
    # nn.Identity has no parameters: ProtoNets on raw features is a legitimate baseline.
    learner = ProtoNet(nn.Identity())
    ep = _proto_episode()
    torch.testing.assert_close(learner.adapt(X_SUPPORT, Y_SUPPORT, SUPPORT_MASK).predict(X_QUERY), PROTO_LOGITS)
    expected = F.cross_entropy(PROTO_LOGITS.reshape(-1, 3), Y_QUERY.reshape(-1))
    torch.testing.assert_close(learner.meta_loss(ep), expected)
    assert learner.evaluate(ep).shape == (2,)


def test_metric_learners_reject_bad_support_labels():
    learner = ProtoNet(_identity_linear())
    with pytest.raises(ShapeError, match="every class needs at least one"):
        # Class 2 of task 1 has only a masked example.
        learner.adapt(X_SUPPORT, Y_SUPPORT, torch.tensor([[True] * 4, [True, True, False, True]]))
    with pytest.raises(ShapeError, match=r"int64 labels \[tasks, support\], got torch.int32"):
        learner.adapt(X_SUPPORT, Y_SUPPORT.int())


# -- Matching Networks ------------------------------------------------------------


def _matching_hand(xs, ys, mask, xq, n_way, scale=1.0):
    """log p(y=c|x) for one task with plain Python arithmetic."""

    def cos(a, b):
        na = math.sqrt(sum(v * v for v in a))
        nb = math.sqrt(sum(v * v for v in b))
        return sum(u * v for u, v in zip(a, b)) / (na * nb)

    out = []
    for q in xq:
        w = [math.exp(scale * cos(q, s)) if m else 0.0 for s, m in zip(xs, mask)]
        z = sum(w)
        out.append([math.log(sum(wi for wi, yi in zip(w, ys) if yi == c) / z) for c in range(n_way)])
    return out


def test_matching_probabilities_match_hand_cosine_softmax():
    # Simple unit vectors first: query (1, 0) vs supports (1,0):c0, (0,1):c1, (-1,0):c0.
    xs = _t([[[1, 0], [0, 1], [-1, 0]]])
    ys = torch.tensor([[0, 1, 0]])
    xq = _t([[[1, 0], [0, 2]]])
    learner = MatchingNet(_identity_linear())
    logp = learner.adapt(xs, ys).predict(xq)
    e = math.e
    z = e + 1 + 1 / e
    expected = _t([[[math.log((e + 1 / e) / z), math.log(1 / z)], [math.log(2 / (e + 2)), math.log(e / (e + 2))]]])
    torch.testing.assert_close(logp, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(1, 2, dtype=torch.float64))
    # Masking the (-1, 0) example removes it from the attention.
    logp_masked = learner.adapt(xs, ys, torch.tensor([[True, True, False]])).predict(xq)
    torch.testing.assert_close(
        logp_masked[0, 0], _t([math.log(e / (e + 1)), math.log(1 / (e + 1))]), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_matching_general_points_match_hand_computation(scale):
    xs = _t([[[1, 2], [-1, 0.5], [2, -2], [3, 3]], [[0.5, -1], [1, 1], [-2, 1], [1, -3]]])
    ys = torch.tensor([[0, 1, 2, 0], [2, 1, 0, 1]])
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    xq = _t([[[1, 1], [-2, 0.3]], [[0.2, 0.9], [1, -1]]])
    learner = MatchingNet(_identity_linear(), scale=scale)
    got = learner.adapt(xs, ys, mask).predict(xq)
    expected = _t(
        [_matching_hand(xs[t].tolist(), ys[t].tolist(), mask[t].tolist(), xq[t].tolist(), 3, scale) for t in range(2)]
    )
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    # The masked example can be anything.
    moved = xs.clone()
    moved[0, 3] = _t([-7, 0.1])
    torch.testing.assert_close(learner.adapt(moved, ys, mask).predict(xq), got, rtol=0, atol=0)


def test_matching_meta_loss_is_nll():
    learner = MatchingNet(_identity_linear())
    ep = _proto_episode()
    expected_logp = learner.adapt(ep.x_support, ep.y_support, ep.support_mask).predict(ep.x_query)
    expected = -expected_logp.gather(-1, Y_QUERY[..., None]).mean()
    torch.testing.assert_close(learner.meta_loss(ep), expected, rtol=1e-12, atol=1e-12)


# -- training and chunking -----------------------------------------------------------


def _separable_episode(n_tasks: int, gen: torch.Generator, n_way: int = 2, k: int = 3, q: int = 4) -> Episode:
    """Classes differ in the first 2 of 8 features; the other 6 are loud noise an embedding should drop."""
    centers = 2.0 * torch.randn(n_tasks, n_way, 1, 2, generator=gen)

    def draw(n: int) -> torch.Tensor:
        signal = centers + 0.3 * torch.randn(n_tasks, n_way, n, 2, generator=gen)
        noise = 3.0 * torch.randn(n_tasks, n_way, n, 6, generator=gen)
        return torch.cat([signal, noise], -1).reshape(n_tasks, n_way * n, 8)

    labels = lambda n: torch.arange(n_way).repeat_interleave(n).expand(n_tasks, -1).contiguous()  # noqa: E731
    return Episode(draw(k), labels(k), draw(q), labels(q))


def test_protonet_meta_loss_decreases_with_adam():
    torch.manual_seed(0)
    learner = ProtoNet(nn.Linear(8, 4))
    val = _separable_episode(16, make_generator(1))
    before = float(learner.meta_loss(val).detach())
    before_acc = float(learner.evaluate(val).mean())
    opt = torch.optim.Adam(learner.parameters(), lr=0.05)
    gen = make_generator(2)
    for _ in range(40):
        opt.zero_grad()
        learner.meta_backward(_separable_episode(8, gen))
        opt.step()
    after = float(learner.meta_loss(val).detach())
    assert after < 0.6 * before, (before, after)
    assert float(learner.evaluate(val).mean()) > before_acc


@pytest.mark.parametrize("name", ["protonet", "matching"])
def test_metric_chunked_equals_unchunked(name):
    ep = _separable_episode(5, make_generator(3))
    out = {}
    for chunk in (None, 2):
        torch.manual_seed(1)
        learner = make_learner(name, nn.Linear(8, 4), chunk_size=chunk)
        loss = learner.meta_backward(ep)
        out[chunk] = (loss, [p.grad.clone() for p in learner.parameters()], learner.evaluate(ep))
    assert out[None][0] == pytest.approx(out[2][0], rel=1e-6)
    for a, b in zip(out[None][1], out[2][1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out[None][2], out[2][2])
