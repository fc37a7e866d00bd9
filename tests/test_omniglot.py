"""Omniglot loader and family: generated files for the edge cases, the real files for the data."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import metamap.tasks.omniglot as omniglot
from metamap.errors import ConfigError, DataError
from metamap.learners import ProtoNet
from metamap.nn import Conv4
from metamap.tasks import load_omniglot, make_generator, omniglot_class_splits, omniglot_family

BACKGROUND, EVALUATION = "images_background.npz", "images_evaluation.npz"


def _images(n_characters: int, ink: bool = False) -> np.ndarray:
    """Bool ``(n, 20, 105, 105)``: True (paper) everywhere, or False (ink) everywhere with ``ink``."""
    return np.full((n_characters, 20, 105, 105), not ink)


def _labels(n_characters: int) -> np.ndarray:
    return np.repeat(np.arange(n_characters), 20).reshape(n_characters, 20)


def _write(folder: Path, background: np.ndarray, evaluation: np.ndarray) -> Path:
    folder.mkdir(exist_ok=True)
    np.savez(folder / BACKGROUND, images=background, labels=_labels(len(background)))
    np.savez(folder / EVALUATION, images=evaluation, labels=_labels(len(evaluation)))
    return folder


@functools.lru_cache(maxsize=1)
def _load_real(folder: str) -> torch.Tensor:
    return load_omniglot(folder)


@pytest.fixture
def real_pool(shared_data: Path) -> torch.Tensor:
    """The real data set, loaded once per session: ``[1623, 20, 1, 28, 28]``."""
    return _load_real(str(shared_data / "omniglot"))


@pytest.fixture
def real_family(real_pool: torch.Tensor, monkeypatch: pytest.MonkeyPatch):
    """``omniglot_family`` on the cached real pool (its loading is tested on its own)."""
    monkeypatch.setattr(omniglot, "load_omniglot", lambda folder, image_size: real_pool)
    return omniglot_family("unused", n_way=5, k_shot=1, n_query=2)


# --- loader on generated files ---------------------------------------------------------


def test_generated_files_background_first_ink_is_one(tmp_path):
    folder = _write(tmp_path / "omniglot", _images(3), _images(2, ink=True))
    pool = load_omniglot(folder)
    assert pool.shape == (5, 20, 1, 28, 28) and pool.dtype == torch.float32
    assert bool((pool[:3] == 0).all()) and bool((pool[3:] == 1).all())


def test_area_averaging(tmp_path):
    background = _images(2)
    background[0, 0, :15, :15] = False  # ink on one 15x15 block: one pixel at 7x7
    background[1, 3, 50:60, 20:90] = False
    pool = load_omniglot(_write(tmp_path / "a", background, _images(1)), image_size=7)
    expected = torch.zeros(7, 7)
    expected[0, 0] = 1.0
    assert torch.equal(pool[0, 0, 0], expected)
    assert pool[0, 1:].sum() == 0
    full = load_omniglot(tmp_path / "a")
    ink = torch.from_numpy(~background[1, 3]).float()[None, None]
    assert torch.allclose(full[1, 3], F.interpolate(ink, size=28, mode="area")[0])
    assert float(full[1, 3].mean()) == pytest.approx(float(ink.mean()), abs=0.01)


def test_missing_folder_and_file(tmp_path):
    with pytest.raises(DataError, match=r"absent.*does not exist; expected a folder holding images_background.npz"):
        load_omniglot(tmp_path / "absent")
    folder = _write(tmp_path / "o", _images(1), _images(1))
    (folder / EVALUATION).unlink()
    with pytest.raises(DataError, match=r"images_evaluation.npz is missing"):
        load_omniglot(folder)


def _save_single_array(path: Path) -> None:
    with path.open("wb") as handle:
        np.save(handle, _images(1))


def _corrupt_member(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda p: p.write_bytes(b"not a zip archive at all"), r"not a valid .npz archive"),
        (lambda p: p.write_bytes(b""), r"not a valid .npz archive"),
        (lambda p: p.write_bytes(p.read_bytes()[:1000]), r"not a valid .npz archive"),
        (_save_single_array, r"got a single array"),
        (lambda p: np.savez(p, images=_images(1)), r"lacks array\(s\) \['labels'\]; it holds \['images'\]"),
        (lambda p: np.savez(p, pictures=_images(1), labels=_labels(1)), r"lacks array\(s\) \['images'\]"),
        (
            lambda p: np.savez(p, images=np.ones((2, 20, 28, 28), bool), labels=_labels(2)),
            r"'images' must be bool \(characters >= 1, 20, 105, 105\), got bool\[2, 20, 28, 28\]",
        ),
        (lambda p: np.savez(p, images=_images(1).astype(np.uint8), labels=_labels(1)), r"got uint8\[1, 20, 105, 105\]"),
        (
            lambda p: np.savez(p, images=_images(2), labels=_labels(1)),
            r"'labels' must be integer \[2, 20\].*got int64\[1, 20\]",
        ),
        (lambda p: np.savez(p, images=_images(1), labels=np.array([object()])), r"array 'labels' cannot be read"),
    ],
)
def test_bad_files_raise_data_error(tmp_path, spoil, message):
    folder = _write(tmp_path / "o", _images(1), _images(1))
    spoil(folder / BACKGROUND)
    with pytest.raises(DataError, match=message) as caught:
        load_omniglot(folder)
    assert "images_background.npz" in str(caught.value)


def test_corrupt_compressed_member_raises_data_error(tmp_path):
    folder = _write(tmp_path / "o", _images(1), _images(1))
    rng = np.random.default_rng(0)
    np.savez_compressed(folder / EVALUATION, images=rng.random((2, 20, 105, 105)) > 0.5, labels=_labels(2))
    _corrupt_member(folder / EVALUATION)
    with pytest.raises(DataError, match=r"images_evaluation.npz: array 'images' cannot be read"):
        load_omniglot(folder)


@pytest.mark.parametrize("image_size", [0, 106, 28.0])
def test_bad_image_size(tmp_path, image_size):
    with pytest.raises(ConfigError, match=r"image_size must be an int in 1..105"):
        load_omniglot(tmp_path, image_size=image_size)


# --- the standard split ------------------------------------------------------------------


def test_class_splits_standard_cut():
    splits = omniglot_class_splits()
    characters = {name: ids // 4 for name, ids in splits.items()}
    assert characters["train"].unique().tolist() == list(range(1100))
    assert characters["val"].unique().tolist() == list(range(1100, 1200))
    assert characters["test"].unique().tolist() == list(range(1200, 1623))
    assert [ids.numel() for ids in splits.values()] == [4400, 400, 1692]
    assert torch.equal(torch.cat(list(splits.values())), torch.arange(4 * 1623))
    assert omniglot_class_splits(val_characters=200)["train"].numel() == 4 * 1000
    for bad in (0, 1200, 10.0):
        with pytest.raises(ConfigError, match=r"val_characters must be an int in 1..1199"):
            omniglot_class_splits(val_characters=bad)


def test_family_needs_all_characters(tmp_path):
    folder = _write(tmp_path / "o", _images(2), _images(1))
    with pytest.raises(DataError, match=r"needs all 1623 characters \(964 background \+ 659 evaluation\), got 3"):
        omniglot_family(folder, n_way=2, k_shot=1, n_query=1)


# --- the real data -----------------------------------------------------------------------


def test_real_data_shape_range_and_order(real_pool):
    assert real_pool.shape == (1623, 20, 1, 28, 28) and real_pool.dtype == torch.float32
    assert float(real_pool.min()) == 0.0 and float(real_pool.max()) == 1.0
    assert 0.05 < float(real_pool.mean()) < 0.12  # strokes on white paper: mostly background
    assert float(real_pool[:, :, 0, 0, 0].mean()) < 0.01  # the corners are paper
    # Ink fractions of single characters, computed from the raw 105x105 files with numpy:
    # background 0 and 963, evaluation 0 and 658. Background comes first.
    raw = {0: 0.07919, 963: 0.03810, 964: 0.15479, 1622: 0.05820}
    for index, ink in raw.items():
        assert float(real_pool[index].mean()) == pytest.approx(ink, abs=1e-3)


def test_real_family_splits_disjoint_at_character_level(real_family):
    drawn = {}
    for name in ("train", "val", "test"):
        family = real_family.split(name)
        assert family.split_name == name
        drawn[name] = family.sample(64, make_generator(0)).meta["classes"] // 4
    assert int(drawn["train"].max()) < 1100 <= int(drawn["val"].min())
    assert int(drawn["val"].max()) < 1200 <= int(drawn["test"].min())
    assert real_family.classes.numel() == 4400 and real_family.rotations


def test_real_family_rotates_and_feeds_protonet(real_family, real_pool):
    episode = real_family.sample(2, make_generator(1))
    assert episode.x_support.shape == (2, 5, 1, 28, 28) and episode.x_query.shape == (2, 10, 1, 28, 28)
    classes = episode.meta["classes"]
    for t in range(2):
        for s in range(5):
            c = int(classes[t, episode.y_support[t, s]])
            drawings = torch.rot90(real_pool[c // 4], c % 4, dims=(-2, -1))
            assert (drawings == episode.x_support[t, s]).flatten(1).all(1).any()
    torch.manual_seed(0)
    loss = ProtoNet(Conv4(hidden=16)).meta_loss(episode)
    assert loss.dim() == 0 and loss.requires_grad and 0 < float(loss.detach()) < 100
