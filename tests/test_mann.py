"""MANN: memory addressing on hand-made keys, label-shifted sequences, the learner protocol."""

from __future__ import annotations

import math

import pytest
import torch

from metamap.errors import ConfigError, ShapeError
from metamap.learners import MANN, AdaptOptions
from metamap.learners.mann import (
    cosine_read_weights,
    least_used_weights,
    lrua_write,
    lrua_write_weights,
    usage_update,
)
from metamap.tasks import Episode, NWayKShot, SequenceEpisodes, instance_index, make_generator, shift_labels
from metamap.tasks.sequence import accuracy_by_instance, label_inputs, shuffled_sequences

# -- memory addressing --------------------------------------------------------------------------


def test_content_read_picks_the_most_similar_slot_and_ignores_scale():
    memory = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.7, 0.7, 0.0]]])  # [1, 4, 3]
    keys = torch.tensor([[[0.0, 0.1, 0.0], [0.6, 0.5, 0.0]]])  # [1, 2, 3]: head 0 ~ slot 1, head 1 ~ slot 3
    weights = cosine_read_weights(keys, memory)
    assert weights.shape == (1, 2, 4)
    assert weights.argmax(-1).tolist() == [[1, 3]]
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 2))
    # cosine: scaling a key or the memory changes nothing
    torch.testing.assert_close(cosine_read_weights(50 * keys, 0.01 * memory), weights)
    # a key strength sharpens without moving the maximum
    sharp = cosine_read_weights(keys, memory, torch.tensor([[20.0, 20.0]]))
    assert sharp.argmax(-1).tolist() == [[1, 3]]
    assert bool((sharp.max(-1).values > weights.max(-1).values).all())
    assert sharp[0, 0, 1] > 0.99


def test_zero_slots_have_cosine_zero():
    weights = cosine_read_weights(torch.tensor([[[1.0, 0.0]]]), torch.zeros(1, 3, 2))
    torch.testing.assert_close(weights, torch.full((1, 1, 3), 1 / 3))


def test_least_used_marks_the_n_smallest_usages_ties_to_lower_index():
    usage = torch.tensor([[0.5, 0.1, 0.9, 0.1, 0.05], [0.0, 0.0, 0.0, 0.0, 0.0]])
    assert least_used_weights(usage, 3).tolist() == [[0, 1, 0, 1, 1], [1, 1, 1, 0, 0]]
    assert least_used_weights(usage, 1).tolist() == [[0, 0, 0, 0, 1], [1, 0, 0, 0, 0]]


def test_lru_write_goes_to_the_least_used_slot_after_zeroing_it():
    memory = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]])  # [1, 3, 2]
    usage = torch.tensor([[0.8, 0.2, 0.5]])  # slot 1 least used
    least = least_used_weights(usage, 1)  # [1, 3]
    previous_read = torch.tensor([[[1.0, 0.0, 0.0]]])
    key = torch.tensor([[[0.25, -0.5]]])
    # gate 0: all of the write goes to the least used slot, whose old content is gone
    write = lrua_write_weights(previous_read, least, torch.zeros(1, 1))
    torch.testing.assert_close(write, torch.tensor([[[0.0, 1.0, 0.0]]]))
    new = lrua_write(memory, least, write, key)
    torch.testing.assert_close(new, torch.tensor([[[1.0, 2.0], [0.25, -0.5], [5.0, 6.0]]]))
    # gate 1: the write goes to the slot read last step (added), the least used slot is still zeroed
    write = lrua_write_weights(previous_read, least, torch.ones(1, 1))
    new = lrua_write(memory, least, write, key)
    torch.testing.assert_close(new, torch.tensor([[[1.25, 1.5], [0.0, 0.0], [5.0, 6.0]]]))
    # gate 1/2: half to each
    write = lrua_write_weights(previous_read, least, torch.full((1, 1), 0.5))
    torch.testing.assert_close(write, torch.tensor([[[0.5, 0.5, 0.0]]]))
    # two heads share the least-used weighting (the 2 least used slots) and each has its own gate
    two = lrua_write_weights(
        torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]]), least_used_weights(usage, 2), torch.tensor([[0.0, 1.0]])
    )
    torch.testing.assert_close(two, torch.tensor([[[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]]]))


def test_usage_decays_and_adds_read_and_write_weights():
    usage = torch.tensor([[1.0, 0.0, 0.5]])
    read = torch.tensor([[[0.2, 0.8, 0.0], [0.0, 0.0, 1.0]]])
    write = torch.tensor([[[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]])
    torch.testing.assert_close(usage_update(usage, read, write, 0.95), torch.tensor([[0.95 + 0.2, 1.8, 0.475 + 1.0]]))
    # without reads or writes, usage decays geometrically
    zero = torch.zeros(1, 2, 3)
    decayed = usage
    for _ in range(10):
        decayed = usage_update(decayed, zero, zero, 0.5)
    torch.testing.assert_close(decayed, usage * 0.5**10)


def test_memory_functions_reject_bad_shapes():
    with pytest.raises(ShapeError, match=r"expected keys \[T, H, W\] and memory \[T, N, W\]"):
        cosine_read_weights(torch.zeros(1, 2, 3), torch.zeros(1, 4, 5))
    with pytest.raises(ShapeError, match=r"usage \[T, N\] with N >= 5"):
        least_used_weights(torch.zeros(1, 3), 5)
    with pytest.raises(ShapeError, match=r"least_used \[T, N\] and gate \[T, H\]"):
        lrua_write_weights(torch.zeros(1, 2, 3), torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(ShapeError, match=r"erase \[T, N\]"):
        lrua_write(torch.zeros(1, 3, 2), torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.zeros(1, 2, 2))
    with pytest.raises(ShapeError, match=r"usage \[T, N\], read and write \[T, H, N\]"):
        usage_update(torch.zeros(1, 4), torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), 0.9)


# -- sequences ----------------------------------------------------------------------------------


def test_shift_labels_shows_the_previous_label_never_its_own():
    y = torch.tensor([[2, 0, 0, 1]])
    shifted = shift_labels(y, 3)
    expected = torch.tensor([[[0, 0, 0], [0, 0, 1], [1, 0, 0], [1, 0, 0]]], dtype=torch.float32)
    torch.testing.assert_close(shifted, expected)
    # with a mask, a masked step's label is skipped: the next step sees the last valid one
    mask = torch.tensor([[True, False, True, True]])
    masked = shift_labels(y, 3, mask)
    torch.testing.assert_close(masked[0, 2], torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(label_inputs(y, 3, mask)[0, -1], torch.tensor([0.0, 1.0, 0.0]))
    with pytest.raises(ShapeError, match=r"labels must lie in 0..2, got 0..3"):
        shift_labels(torch.tensor([[0, 3]]), 3)


def test_instance_index_counts_presentations_of_each_class():
    y = torch.tensor([[1, 0, 1, 1, 0, 2], [0, 0, 0, 1, 1, 0]])
    assert instance_index(y).tolist() == [[1, 1, 2, 3, 2, 1], [1, 2, 3, 1, 2, 4]]
    correct = torch.tensor([[True, False, True, False, True, True], [False, True, True, True, True, True]])
    acc = accuracy_by_instance(correct, y, (1, 2, 4))
    torch.testing.assert_close(acc[0, :2], torch.tensor([2 / 3, 1.0], dtype=torch.float64))
    assert math.isnan(float(acc[0, 2]))
    torch.testing.assert_close(acc[1], torch.tensor([0.5, 1.0, 1.0], dtype=torch.float64))


def _pool_family(n_way=3, k_shot=4, n_query=2, features=6, seed=0) -> NWayKShot:
    gen = make_generator(seed)
    centres = torch.randn(12, 1, features, generator=gen) * 3
    pool = centres + 0.3 * torch.randn(12, 8, features, generator=gen)
    return NWayKShot(pool, n_way=n_way, k_shot=k_shot, n_query=n_query)


def test_sequence_episodes_interleave_the_support_consistently():
    family = _pool_family()
    grouped = family.sample(5, make_generator(3))
    seq = SequenceEpisodes(family).sample(5, make_generator(3))
    assert seq.y_support.shape == (5, 12)
    assert not torch.equal(seq.y_support, grouped.y_support)  # shuffled
    # same examples with the same labels, only reordered; queries untouched
    for t in range(5):
        pairs = {(tuple(x.tolist()), int(y)) for x, y in zip(grouped.x_support[t], grouped.y_support[t])}
        assert pairs == {(tuple(x.tolist()), int(y)) for x, y in zip(seq.x_support[t], seq.y_support[t])}
    torch.testing.assert_close(seq.x_query, grouped.x_query)
    assert SequenceEpisodes(family).split("train").split_name == "train"
    # masks follow their examples
    mask = torch.arange(12).expand(5, 12) % 5 != 0
    masked = Episode(grouped.x_support, grouped.y_support, grouped.x_query, grouped.y_query, support_mask=mask)
    shuffled = shuffled_sequences(masked, make_generator(1))
    kept = {tuple(x.tolist()) for x, m in zip(grouped.x_support[0], mask[0]) if m}
    assert kept == {tuple(x.tolist()) for x, m in zip(shuffled.x_support[0], shuffled.support_mask[0]) if m}


# -- the learner --------------------------------------------------------------------------------


def _small_mann(n_way=3, features=6, seed=0) -> MANN:
    torch.manual_seed(seed)
    return MANN(n_way=n_way, feature_dim=features, hidden=16, memory_slots=12, memory_width=5, read_heads=2)


def test_output_at_step_t_ignores_y_t_and_depends_on_y_t_minus_1():
    learner = _small_mann()
    x = torch.randn(1, 6, 6, generator=make_generator(0))
    y = torch.tensor([[0, 1, 2, 0, 1, 2]])
    base = learner.sequence_logits(x, y)
    changed = y.clone()
    changed[0, 3] = 2  # y_3 changes
    other = learner.sequence_logits(x, changed)
    torch.testing.assert_close(other[:, :4], base[:, :4])  # steps 0..3 never see y_3
    assert not torch.allclose(other[:, 4], base[:, 4])  # step 4 sees y_3


def test_batched_equals_one_task_at_a_time():
    learner = _small_mann()
    episode = SequenceEpisodes(_pool_family()).sample(4, make_generator(5))
    batched = learner.sequence_logits(episode.x_support, episode.y_support)
    query = learner.adapt(episode.x_support, episode.y_support).predict(episode.x_query)
    for t in range(4):
        one = episode.select(slice(t, t + 1))
        torch.testing.assert_close(
            learner.sequence_logits(one.x_support, one.y_support), batched[t : t + 1], atol=1e-5, rtol=1e-5
        )
        torch.testing.assert_close(
            learner.adapt(one.x_support, one.y_support).predict(one.x_query), query[t : t + 1], atol=1e-5, rtol=1e-5
        )


def test_queries_are_answered_independently_from_the_state_after_the_support():
    learner = _small_mann()
    episode = SequenceEpisodes(_pool_family()).sample(2, make_generator(6))
    adapted = learner.adapt(episode.x_support, episode.y_support)
    logits = adapted.predict(episode.x_query)
    assert logits.shape == (2, 6, 3)
    alone = adapted.predict(episode.x_query[:, 2:3])
    torch.testing.assert_close(alone, logits[:, 2:3])
    # a query step continues the support sequence: the same as one more step of it
    x = torch.cat([episode.x_support, episode.x_query[:, :1]], dim=1)
    y = torch.cat([episode.y_support, episode.y_query[:, :1]], dim=1)
    torch.testing.assert_close(learner.sequence_logits(x, y)[:, -1], logits[:, 0], atol=1e-5, rtol=1e-5)


def test_masked_support_steps_change_nothing():
    learner = _small_mann()
    episode = SequenceEpisodes(_pool_family()).sample(2, make_generator(7))
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[:, 4] = False
    noisy = episode.x_support.clone()
    noisy[:, 4] = 100.0
    labels = episode.y_support.clone()
    labels[:, 4] = (labels[:, 4] + 1) % 3
    drop = torch.cat([torch.arange(4), torch.arange(5, 12)])
    expected = learner.adapt(episode.x_support[:, drop], episode.y_support[:, drop]).predict(episode.x_query)
    got = learner.adapt(noisy, labels, mask).predict(episode.x_query)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    masked = Episode(noisy, labels, episode.x_query, episode.y_query, support_mask=mask)
    assert torch.isfinite(learner.meta_loss(masked))


def test_training_on_toy_sequences_lowers_the_loss_and_predicts_well():
    # 2-way sequences of 4 + 4 noisy copies of random class centres; labels are drawn per episode,
    # so only the memory of the support can tell a query's label (chance: 0.5, loss ln 2)
    gen = make_generator(0)
    pool = torch.randn(24, 1, 12, generator=gen) + 0.1 * torch.randn(24, 8, 12, generator=gen)
    family = SequenceEpisodes(NWayKShot(pool, n_way=2, k_shot=4, n_query=2))
    torch.manual_seed(0)
    learner = MANN(n_way=2, feature_dim=12, hidden=32, memory_slots=12, memory_width=8, read_heads=1)
    optimizer = torch.optim.Adam(learner.parameters(), lr=1e-2)
    fixed = family.sample(32, make_generator(99))
    with torch.no_grad():
        before = float(learner.meta_loss(fixed))
    generator = make_generator(1)
    for _ in range(100):
        optimizer.zero_grad()
        learner.meta_backward(family.sample(16, generator))
        optimizer.step()
    with torch.no_grad():
        after = float(learner.meta_loss(fixed))
    assert before > 0.65 and after < 0.85 * before, (before, after)
    accuracy = float(learner.evaluate(fixed).mean())
    assert accuracy > 0.65, accuracy


def test_conv_encoder_and_feature_dim_from_embedding_dim():
    from metamap.nn import Conv4

    learner = MANN(Conv4(hidden=8, image_size=20), n_way=5, hidden=8, memory_slots=8, memory_width=4, read_heads=2)
    assert learner.feature_dim == 8
    x = torch.rand(2, 7, 1, 20, 20)
    y = torch.randint(0, 5, (2, 7), generator=make_generator(0))
    assert learner.sequence_logits(x, y).shape == (2, 7, 5)


def test_clear_errors():
    with pytest.raises(ConfigError, match="give feature_dim"):
        MANN(torch.nn.Linear(3, 4))
    with pytest.raises(ConfigError, match="read_heads <= memory_slots"):
        MANN(feature_dim=4, read_heads=9, memory_slots=8)
    learner = _small_mann()
    with pytest.raises(ShapeError, match=r"labels must lie in 0..2, got 0..4"):
        learner.sequence_logits(torch.zeros(1, 2, 6), torch.tensor([[0, 4]]))
    with pytest.raises(ShapeError, match="the encoder gives 7 features per example, feature_dim is 6"):
        learner.sequence_logits(torch.zeros(1, 2, 7), torch.tensor([[0, 1]]))
    with pytest.raises(ShapeError, match="cannot take this episode's inputs"):
        MANN(torch.nn.Linear(6, 4), feature_dim=4).sequence_logits(torch.zeros(1, 2, 7), torch.tensor([[0, 1]]))
    with pytest.raises(ShapeError, match=r"int64 class labels \[tasks, examples\]"):
        learner.sequence_logits(torch.zeros(1, 2, 6), torch.zeros(1, 2))
    with pytest.raises(ConfigError, match=r"MANN.adapt takes no option\(s\) \['steps'\]; its options: none"):
        learner.adapt(torch.zeros(1, 2, 6), torch.tensor([[0, 1]]), options=AdaptOptions(steps=3))


def test_built_by_name_with_typed_options():
    from metamap.learners import make_learner

    learner = make_learner(
        "mann", torch.nn.Flatten(), n_way=3, feature_dim=6, hidden=8, memory_slots=4, memory_width=5, read_heads=2
    )
    assert isinstance(learner, MANN)
    assert (learner.n_way, learner.hidden, learner.memory_slots, learner.read_heads) == (3, 8, 4, 2)
    with pytest.raises(
        ConfigError, match=r"learner 'mann' has no option\(s\) \['inner_steps'\]; it takes \[.*'memory_slots'"
    ):
        make_learner("mann", torch.nn.Flatten(), feature_dim=6, inner_steps=2)
