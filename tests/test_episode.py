"""Episode validation and slicing, Sinusoid sampling, reproducibility from a seed."""

from __future__ import annotations

import math

import pytest
import torch

from metamap.errors import DataError, ShapeError
from metamap.learners import MAML
from metamap.nn import MLP
from metamap.tasks.episode import Episode, concat_episodes
from metamap.tasks.family import make_generator
from metamap.tasks.sinusoid import Sinusoid


def _episode(t: int = 4, s: int = 3, q: int = 2, masks: bool = False) -> Episode:
    gen = make_generator(123)
    support_mask = query_mask = None
    if masks:
        support_mask = torch.rand(t, s, generator=gen) > 0.3
        query_mask = torch.rand(t, q, generator=gen) > 0.3
    return Episode(
        x_support=torch.randn(t, s, 2, generator=gen),
        y_support=torch.randn(t, s, 1, generator=gen),
        x_query=torch.randn(t, q, 2, generator=gen),
        y_query=torch.randn(t, q, 1, generator=gen),
        support_mask=support_mask,
        query_mask=query_mask,
        meta={"id": torch.arange(t), "name": "toy", "scalar": torch.tensor(1.5)},
    )


def _assert_episodes_equal(a: Episode, b: Episode) -> None:
    for name in ("x_support", "y_support", "x_query", "y_query", "support_mask", "query_mask"):
        va, vb = getattr(a, name), getattr(b, name)
        if va is None or vb is None:
            assert va is None and vb is None, name
        else:
            assert torch.equal(va, vb), name


# -- Sinusoid sampling ---------------------------------------------------------


def test_sinusoid_shapes_ranges_and_curve():
    family = Sinusoid(k_shot=5, n_query=7)
    ep = family.sample(6, make_generator(0))
    assert ep.x_support.shape == (6, 5, 1) and ep.y_support.shape == (6, 5, 1)
    assert ep.x_query.shape == (6, 7, 1) and ep.y_query.shape == (6, 7, 1)
    assert ep.x_support.dtype == torch.float32 and not ep.is_classification
    amp, phase = ep.meta["amplitude"], ep.meta["phase"]
    assert amp.shape == (6,) and phase.shape == (6,)
    assert bool(((amp >= 0.1) & (amp <= 5.0)).all())
    assert bool(((phase >= 0.0) & (phase <= math.pi)).all())
    x, y, mask = ep.all_examples()
    assert mask is None
    assert bool((x.abs() <= 5.0).all())
    expected = amp[:, None, None] * torch.sin(x - phase[:, None, None])
    torch.testing.assert_close(y, expected)


def test_same_seed_same_episode_different_seed_different_episode():
    family = Sinusoid()
    a = family.sample(4, make_generator(7))
    b = family.sample(4, make_generator(7))
    _assert_episodes_equal(a, b)
    assert torch.equal(a.meta["amplitude"], b.meta["amplitude"])
    assert torch.equal(a.meta["phase"], b.meta["phase"])
    c = family.sample(4, make_generator(8))
    assert not torch.equal(a.x_support, c.x_support)
    assert not torch.equal(a.meta["amplitude"], c.meta["amplitude"])


def test_successive_draws_from_one_generator_differ():
    gen = make_generator(3)
    family = Sinusoid()
    a, b = family.sample(4, gen), family.sample(4, gen)
    assert not torch.equal(a.meta["amplitude"], b.meta["amplitude"])


def test_split_names_give_different_tasks_from_same_seed():
    family = Sinusoid()
    eps = {name: family.split(name).sample(5, make_generator(11)) for name in ("train", "val", "test")}
    assert family.split("val").split_name == "val"
    for a in ("train", "val", "test"):
        for b in ("train", "val", "test"):
            if a < b:
                assert not torch.equal(eps[a].meta["amplitude"], eps[b].meta["amplitude"]), (a, b)
                assert not torch.equal(eps[a].x_support, eps[b].x_support), (a, b)
    # Each split is itself reproducible.
    _assert_episodes_equal(eps["val"], family.split("val").sample(5, make_generator(11)))


def test_same_seed_same_meta_gradient():
    def meta_grad(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        learner = MAML(MLP(1, [8], 1), inner_steps=2, inner_lr=0.05)
        ep = Sinusoid(k_shot=4, n_query=4).sample(3, make_generator(seed))
        learner.meta_loss(ep).backward()
        return [p.grad.clone() for p in learner.parameters()]

    g1, g2 = meta_grad(5), meta_grad(5)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))
    g3 = meta_grad(6)
    assert not all(torch.equal(a, b) for a, b in zip(g1, g3))


# -- Episode validation ----------------------------------------------------------


def test_valid_episode_properties():
    ep = _episode(t=4, s=3, q=2)
    assert ep.n_tasks == 4 and not ep.is_classification
    cls = Episode(
        torch.zeros(2, 3, 4),
        torch.zeros(2, 3, dtype=torch.long),
        torch.zeros(2, 1, 4),
        torch.zeros(2, 1, dtype=torch.long),
    )
    assert cls.is_classification


def test_leading_dim_mismatch_raises_shape_error_naming_field():
    with pytest.raises(ShapeError, match=r"y_support.*expected leading dims \[2, 3\].*got float32\[2, 4, 1\]"):
        Episode(torch.zeros(2, 3, 1), torch.zeros(2, 4, 1), torch.zeros(2, 5, 1), torch.zeros(2, 5, 1))
    with pytest.raises(ShapeError, match=r"x_query.*\[2, 5\].*float32\[3, 5, 1\]"):
        Episode(torch.zeros(2, 3, 1), torch.zeros(2, 3, 1), torch.zeros(3, 5, 1), torch.zeros(2, 5, 1))
    with pytest.raises(ShapeError, match=r"y_query"):
        Episode(torch.zeros(2, 3, 1), torch.zeros(2, 3, 1), torch.zeros(2, 5, 1), torch.zeros(2, 4, 1))


def test_feature_shape_and_dtype_mismatches_raise():
    with pytest.raises(ShapeError, match=r"feature shape.*float32\[2, 3, 1\] vs float32\[2, 5, 2\]"):
        Episode(torch.zeros(2, 3, 1), torch.zeros(2, 3, 1), torch.zeros(2, 5, 2), torch.zeros(2, 5, 1))
    with pytest.raises(ShapeError, match=r"y_support is torch.float32 but y_query is torch.int64"):
        Episode(torch.zeros(2, 3, 1), torch.zeros(2, 3, 1), torch.zeros(2, 5, 1), torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ShapeError, match=r"x_support: expected at least \[tasks, examples\], got float32\[3\]"):
        Episode(torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3))
    with pytest.raises(ShapeError, match=r"x_query: expected a torch.Tensor, got list"):
        Episode(torch.zeros(2, 3, 1), torch.zeros(2, 3, 1), [[0.0]], torch.zeros(2, 5, 1))


@pytest.mark.parametrize("field", ["x_support", "y_support", "x_query", "y_query"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values_raise_data_error(field, bad):
    tensors = {
        "x_support": torch.zeros(2, 3, 1),
        "y_support": torch.zeros(2, 3, 1),
        "x_query": torch.zeros(2, 5, 1),
        "y_query": torch.zeros(2, 5, 1),
    }
    tensors[field][1, 0, 0] = bad
    with pytest.raises(DataError, match=rf"Episode\.{field} holds 1 NaN/inf value"):
        Episode(**tensors)


def test_mask_dtype_and_shape_validated():
    base = dict(
        x_support=torch.zeros(2, 3, 1),
        y_support=torch.zeros(2, 3, 1),
        x_query=torch.zeros(2, 5, 1),
        y_query=torch.zeros(2, 5, 1),
    )
    with pytest.raises(ShapeError, match=r"support_mask: expected bool\[2, 3\] or bool\[2, 3, 1\], got uint8\[2, 3\]"):
        Episode(**base, support_mask=torch.ones(2, 3, dtype=torch.uint8))
    with pytest.raises(ShapeError, match=r"query_mask: expected bool\[2, 5\] or bool\[2, 5, 1\], got float32\[2, 5\]"):
        Episode(**base, query_mask=torch.ones(2, 5))
    with pytest.raises(ShapeError, match=r"query_mask: expected bool\[2, 5\] or bool\[2, 5, 1\], got bool\[2, 4\]"):
        Episode(**base, query_mask=torch.ones(2, 4, dtype=torch.bool))
    # A correct mask is accepted.
    Episode(**base, support_mask=torch.ones(2, 3, dtype=torch.bool))


# -- select / chunks / shard / all_examples -----------------------------------


def test_select_slices_tensors_and_per_task_meta():
    ep = _episode(t=4, masks=True)
    sub = ep.select(torch.tensor([3, 1]))
    assert sub.n_tasks == 2
    assert torch.equal(sub.x_support, ep.x_support[[3, 1]])
    assert torch.equal(sub.query_mask, ep.query_mask[[3, 1]])
    assert torch.equal(sub.meta["id"], torch.tensor([3, 1]))
    assert sub.meta["name"] == "toy"
    assert torch.equal(sub.meta["scalar"], torch.tensor(1.5))  # 0-d tensors are not per-task
    sl = ep.select(slice(1, 3))
    assert torch.equal(sl.meta["id"], torch.tensor([1, 2]))
    assert torch.equal(sl.y_query, ep.y_query[1:3])


def test_chunks_cover_the_episode_in_order():
    ep = _episode(t=5, masks=True)
    parts = ep.chunks(2)
    assert [p.n_tasks for p in parts] == [2, 2, 1]
    for name in ("x_support", "y_support", "x_query", "y_query", "support_mask", "query_mask"):
        assert torch.equal(torch.cat([getattr(p, name) for p in parts]), getattr(ep, name)), name
    assert torch.equal(torch.cat([p.meta["id"] for p in parts]), ep.meta["id"])
    assert ep.chunks(None) == [ep] and ep.chunks(5)[0] is ep and ep.chunks(9)[0] is ep
    with pytest.raises(ShapeError, match="chunk_size must be >= 1, got 0"):
        ep.chunks(0)


def test_shard_concatenates_back_and_uneven_shard_raises():
    ep = _episode(t=4, masks=True)
    shards = [ep.shard(rank, 2) for rank in range(2)]
    assert [s.n_tasks for s in shards] == [2, 2]
    for name in ("x_support", "y_support", "x_query", "y_query", "support_mask", "query_mask"):
        assert torch.equal(torch.cat([getattr(s, name) for s in shards]), getattr(ep, name)), name
    assert torch.equal(shards[1].meta["id"], torch.tensor([2, 3]))
    _assert_episodes_equal(ep.shard(0, 1), ep)
    with pytest.raises(ShapeError, match=r"4 tasks cannot be split evenly over 3 processes"):
        ep.shard(0, 3)


def test_all_examples_joins_support_and_query_and_masks():
    ep = _episode(t=2, s=3, q=2, masks=True)
    x, y, mask = ep.all_examples()
    assert x.shape == (2, 5, 2) and y.shape == (2, 5, 1) and mask.shape == (2, 5)
    assert torch.equal(x[:, :3], ep.x_support) and torch.equal(x[:, 3:], ep.x_query)
    assert torch.equal(y[:, 3:], ep.y_query)
    assert torch.equal(mask, torch.cat([ep.support_mask, ep.query_mask], 1))
    # Only a query mask: support examples all count.
    only_query = Episode(ep.x_support, ep.y_support, ep.x_query, ep.y_query, query_mask=ep.query_mask)
    _, _, mask = only_query.all_examples()
    assert mask.dtype == torch.bool
    assert bool(mask[:, :3].all()) and torch.equal(mask[:, 3:], ep.query_mask)


def test_to_keeps_values():
    ep = _episode(masks=True)
    _assert_episodes_equal(ep.to("cpu"), ep)


def test_an_episode_is_validated_once_when_built_not_when_sliced_or_moved(monkeypatch):
    ep = _episode(t=4, masks=True)
    calls = []
    monkeypatch.setattr(Episode, "validate", lambda self: calls.append(self))
    parts = [ep.to("cpu"), ep.select(slice(0, 2)), *ep.chunks(3), ep.shard(1, 2)]
    assert calls == []
    assert [p.n_tasks for p in parts] == [4, 2, 3, 1, 2]
    Episode(ep.x_support, ep.y_support, ep.x_query, ep.y_query)
    assert len(calls) == 1


# -- concat_episodes ------------------------------------------------------------


@pytest.mark.parametrize("masks", [False, True])
def test_concat_episodes_undoes_select(masks):
    episode = _episode(t=5, masks=masks)
    joined = concat_episodes([episode.select(slice(0, 2)), episode.select(slice(2, 5))], extra_meta={"flag": 1})
    _assert_episodes_equal(joined, episode)
    assert torch.equal(joined.meta["id"], torch.arange(5))
    assert joined.meta["flag"] == 1
    assert "name" not in joined.meta and "scalar" not in joined.meta  # only tensors with a task axis are joined


def test_concat_episodes_of_nothing_is_refused():
    with pytest.raises(ShapeError, match="at least one episode"):
        concat_episodes([])
