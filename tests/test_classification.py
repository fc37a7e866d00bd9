"""NWayKShot: episode layout, distinctness, splits, reproducibility, rotations, errors."""

from __future__ import annotations

import pytest
import torch

from metamap.errors import ConfigError, ShapeError
from metamap.tasks import NWayKShot, TaskFamily, make_generator

N_BASE, PER_CLASS, SIDE = 12, 8, 4
STRIDE = 1000  # pool[c, e] holds (c * PER_CLASS + e) * STRIDE + 0..15, so its minimum names it


def _pool() -> torch.Tensor:
    """``float32 [12, 8, 1, 4, 4]``; every example unique and no image symmetric under rotation."""
    ident = torch.arange(N_BASE * PER_CLASS, dtype=torch.float32).view(N_BASE, PER_CLASS, 1, 1, 1)
    pattern = torch.arange(SIDE * SIDE, dtype=torch.float32).view(1, 1, 1, SIDE, SIDE)
    return ident * STRIDE + pattern


def _identities(x: torch.Tensor) -> torch.Tensor:
    """``[T, S, 1, 4, 4]`` -> ``[T, S]`` flat example index ``base_class * PER_CLASS + example``."""
    return (x.amin(dim=(-3, -2, -1)) / STRIDE).round().long()


def _splits() -> dict[str, torch.Tensor]:
    return {"train": torch.arange(0, 6), "val": torch.arange(6, 9), "test": torch.arange(9, 12)}


def test_episode_shapes_dtypes_and_labels():
    family = NWayKShot(_pool(), n_way=5, k_shot=2, n_query=3)
    episode = family.sample(4, make_generator(0))
    assert isinstance(family, TaskFamily)
    assert episode.x_support.shape == (4, 10, 1, SIDE, SIDE)
    assert episode.x_query.shape == (4, 15, 1, SIDE, SIDE)
    assert episode.x_support.dtype == torch.float32
    assert episode.y_support.dtype == episode.y_query.dtype == torch.int64
    assert episode.y_support.shape == (4, 10) and episode.y_query.shape == (4, 15)
    for labels, per_class in ((episode.y_support, 2), (episode.y_query, 3)):
        for row in labels:
            assert torch.equal(torch.bincount(row, minlength=5), torch.full((5,), per_class))
    assert episode.meta["n_way"] == 5
    assert episode.meta["classes"].shape == (4, 5) and episode.meta["classes"].dtype == torch.int64
    assert episode.is_classification


def test_classes_distinct_examples_distinct_and_labels_match_classes():
    family = NWayKShot(_pool(), n_way=6, k_shot=3, n_query=4)
    episode = family.sample(16, make_generator(1))
    classes = episode.meta["classes"]
    ids = torch.cat([_identities(episode.x_support), _identities(episode.x_query)], dim=1)
    labels = torch.cat([episode.y_support, episode.y_query], dim=1)
    for t in range(16):
        assert classes[t].unique().numel() == 6
        assert ids[t].unique().numel() == ids.shape[1]
        assert torch.equal(ids[t] // PER_CLASS, classes[t][labels[t]])


def test_label_order_is_random_per_task():
    episode = NWayKShot(_pool(), n_way=5, k_shot=1, n_query=1).sample(32, make_generator(2))
    classes = episode.meta["classes"]
    assert not bool((classes[:, 1:] > classes[:, :-1]).all())
    assert classes[:, 0].unique().numel() > 3


def test_splits_draw_only_their_classes_and_cover_them():
    family = NWayKShot(_pool(), n_way=3, k_shot=1, n_query=2, class_splits=_splits())
    for name, allowed in _splits().items():
        episode = family.split(name).sample(64, make_generator(3))
        drawn = episode.meta["classes"].unique()
        assert torch.equal(drawn, allowed)
        assert torch.isin(_identities(episode.x_query) // PER_CLASS, allowed).all()
    assert family.split("val").split_name == "val" and family.split_name == "train"


def test_same_generator_state_same_episode_other_seed_other_episode():
    family = NWayKShot(_pool(), n_way=4, k_shot=2, n_query=2, rotations=True)
    first, again = family.sample(8, make_generator(7)), family.sample(8, make_generator(7))
    other = family.sample(8, make_generator(8))
    for name in ("x_support", "y_support", "x_query", "y_query"):
        assert torch.equal(getattr(first, name), getattr(again, name))
    assert torch.equal(first.meta["classes"], again.meta["classes"])
    assert not torch.equal(first.x_support, other.x_support)
    generator = make_generator(7)
    family.sample(8, generator)
    assert not torch.equal(family.sample(8, generator).x_support, first.x_support)


def test_rotation_class_is_rot90_of_its_base():
    pool = _pool()
    family = NWayKShot(pool, n_way=2, k_shot=2, n_query=1, class_splits={"train": torch.tensor([1, 5])}, rotations=True)
    episode = family.sample(3, make_generator(4))
    for t in range(3):
        for s in range(4):
            ident = int(_identities(episode.x_support)[t, s])
            base, example = divmod(ident, PER_CLASS)
            assert int(episode.meta["classes"][t, episode.y_support[t, s]]) == 4 * base + 1
            original = pool[base, example]
            assert torch.equal(episode.x_support[t, s], torch.rot90(original, 1, dims=(-2, -1)))
            assert not torch.equal(episode.x_support[t, s], original)


def test_every_rotation_matches_its_class_id():
    pool = _pool()
    episode = NWayKShot(pool, n_way=8, k_shot=1, n_query=2, rotations=True).sample(16, make_generator(5))
    x = torch.cat([episode.x_support, episode.x_query], dim=1)
    labels = torch.cat([episode.y_support, episode.y_query], dim=1)
    classes = torch.gather(episode.meta["classes"], 1, labels)
    assert set(episode.meta["classes"].remainder(4).flatten().tolist()) == {0, 1, 2, 3}
    for t in range(16):
        for s in range(x.shape[1]):
            base, example = divmod(int(_identities(x)[t, s]), PER_CLASS)
            c = int(classes[t, s])
            assert base == c // 4
            assert torch.equal(x[t, s], torch.rot90(pool[base, example], c % 4, dims=(-2, -1)))


def test_rotations_split_at_base_class_level():
    splits = {"train": torch.arange(0, 24), "test": torch.arange(24, 48)}
    family = NWayKShot(_pool(), n_way=5, k_shot=1, n_query=1, class_splits=splits, rotations=True)
    assert family.n_classes == 48
    train = family.sample(32, make_generator(6)).meta["classes"] // 4
    test = family.split("test").sample(32, make_generator(6)).meta["classes"] // 4
    assert not torch.isin(train, test).any()
    with pytest.raises(ConfigError, match=r"'train' and 'val' share 1 base class\(es\), e.g. 0"):
        NWayKShot(_pool(), class_splits={"train": torch.arange(1, 8), "val": torch.tensor([0, 40])}, rotations=True)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_way": 7, "class_splits": _splits()}, r"n_way=7 exceeds the 6 classes of split 'train'"),
        ({"n_way": 2, "k_shot": 5, "n_query": 4}, r"k_shot \+ n_query = 5 \+ 4 = 9 exceeds the 8 examples per class"),
        ({"n_way": 1}, r"n_way must be >= 2, got 1"),
        ({"k_shot": 0}, r"k_shot and n_query must be >= 1, got k_shot=0"),
        ({"n_query": 0}, r"k_shot and n_query must be >= 1, got k_shot=1, n_query=0"),
        ({"split_name": "holdout"}, r"unknown split 'holdout'"),
        ({"class_splits": {"train": torch.arange(3), "tset": torch.arange(3, 6)}}, r"unknown split 'tset'"),
        ({"class_splits": {"val": torch.arange(6)}}, r"split 'train' has no classes; class_splits names \['val'\]"),
        ({"class_splits": {"train": torch.tensor([0, 12])}}, r"ids in \[0, 12\], expected 0..11 \(12 classes"),
        ({"class_splits": {"train": torch.tensor([0, 1, 1])}}, r"repeats class ids"),
        ({"class_splits": {"train": torch.arange(6), "test": torch.arange(5, 9)}}, r"'train' and 'test' share 1"),
        ({"class_splits": {"train": torch.tensor([], dtype=torch.long)}}, r"class_splits\['train'\] is empty"),
    ],
)
def test_bad_options_raise_config_error(options, message):
    with pytest.raises(ConfigError, match=message):
        NWayKShot(_pool(), **options)


@pytest.mark.parametrize(
    ("pool", "options", "message"),
    [
        (torch.zeros(12, 8), {}, r"float \[classes, examples_per_class, \*x_shape\].*got float32\[12, 8\]"),
        (torch.zeros(12, 8, 3, dtype=torch.int64), {}, r"got int64\[12, 8, 3\]"),
        (torch.zeros(12, 8, 1, 4, 5), {"rotations": True}, r"need square images.*got float32\[12, 8, 1, 4, 5\]"),
        (torch.zeros(12, 8, 16), {"rotations": True}, r"rotations need square images"),
        ([[0.0]], {}, r"pool must be a torch.Tensor, got list"),
        (
            torch.zeros(12, 8, 3),
            {"class_splits": {"train": torch.tensor([0.0, 1.0])}},
            r"1-D integer class ids, got float32\[2\]",
        ),
    ],
)
def test_bad_tensors_raise_shape_error(pool, options, message):
    with pytest.raises(ShapeError, match=message):
        NWayKShot(pool, n_way=2, **options)


def test_split_without_classes_and_bad_task_count():
    family = NWayKShot(_pool(), n_query=2)
    with pytest.raises(ConfigError, match=r"split 'val' has no classes; class_splits names \['train'\]"):
        family.split("val")
    with pytest.raises(ConfigError, match=r"n_tasks must be >= 1, got 0"):
        family.sample(0, make_generator(0))
    val_too_small = NWayKShot(_pool(), n_way=4, n_query=2, class_splits=_splits())
    with pytest.raises(ConfigError, match=r"n_way=4 exceeds the 3 classes of split 'val'"):
        val_too_small.split("val")


def test_episode_select_slices_class_metadata():
    episode = NWayKShot(_pool(), n_way=3, k_shot=1, n_query=1).sample(6, make_generator(9))
    part = episode.select(slice(2, 4))
    assert torch.equal(part.meta["classes"], episode.meta["classes"][2:4])
    assert part.x_support.shape == (2, 3, 1, SIDE, SIDE)
