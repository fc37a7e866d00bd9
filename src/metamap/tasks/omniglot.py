"""Omniglot (Lake et al. 2015): 1623 handwritten characters, 20 drawings each.

The data are the two ``.npz`` files described in ``shared/data/README.md``:
``images_background.npz`` (964 characters, 30 alphabets) and
``images_evaluation.npz`` (659 characters, 20 alphabets), each holding
``images`` bool ``(characters, 20, 105, 105)`` with ``True`` on the white
background and ``False`` on the ink, and ``labels`` ``(characters, 20)``.

The few-shot protocol is the one the MAML (Finn et al. 2017) and
Prototypical Networks (Snell et al. 2017) papers describe: images resized to
28x28, every character rotated by 0, 90, 180 and 270 degrees to make four
classes, 1200 characters (4800 classes) for meta-training and validation, the
remaining 423 (1692 classes) for meta-test. See :func:`omniglot_class_splits`
for the exact cut and where it differs from those papers' code.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F

from metamap.errors import ConfigError, DataError, describe
from metamap.tasks.classification import ROTATIONS, NWayKShot

FILES = ("images_background.npz", "images_evaluation.npz")
N_CHARACTERS = 1623
TRAIN_VAL_CHARACTERS = 1200
DRAWERS = 20
RAW_SIZE = 105
_CHUNK = 64  # characters resized at a time: a float copy of all images would take 1.4 GB
_READ_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error)


def load_omniglot(folder: str | Path, image_size: int = 28) -> torch.Tensor:
    """All characters as ``float32 [characters, 20, 1, image_size, image_size]``, ink 1.0, paper 0.0.

    Background characters come first, then evaluation characters, each in the
    files' order (1623 = 964 + 659 for the real files). Each 105x105 drawing
    is resized by area averaging (``adaptive_avg_pool2d``), so a pixel holds
    the fraction of its area covered by ink, in ``[0, 1]``. Nothing is cached.
    Raises DataError for a missing folder or file, a file that is not an
    ``.npz`` archive, or arrays of the wrong key, shape or dtype.
    """
    if not isinstance(image_size, int) or not 1 <= image_size <= RAW_SIZE:
        raise ConfigError(f"load_omniglot: image_size must be an int in 1..{RAW_SIZE}, got {image_size!r}")
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"Omniglot folder {folder} does not exist; expected a folder holding {' and '.join(FILES)}")
    return torch.cat([_resize(_read_images(folder / name), image_size) for name in FILES])


def omniglot_class_splits(val_characters: int = 100) -> dict[str, torch.Tensor]:
    """Class ids ``int64 [C]`` of each split, with four rotations per character (class = 4 * character + turns).

    Characters are taken in the original order (background, then evaluation):

    - train: characters ``0 .. 1199 - val_characters`` (1100 by default, 4400 classes)
    - val:   the last ``val_characters`` of the first 1200 (1100..1199 by default, 400 classes)
    - test:  characters ``1200 .. 1622`` (423, 1692 classes)

    The sizes follow MAML's code (1100 / 100 / 423); which characters land
    where differs from both papers' code: MAML shuffles the character folders
    (Python ``random.seed(1)`` over an unsorted directory listing) before
    cutting, and Prototypical Networks use the alphabet lists of Vinyals et
    al.; neither order can be rebuilt from these files. The splits never share a character (nor any rotation of
    one); as in MAML's split, an alphabet may have characters in two splits.
    """
    if not isinstance(val_characters, int) or not 1 <= val_characters < TRAIN_VAL_CHARACTERS:
        raise ConfigError(
            f"omniglot_class_splits: val_characters must be an int in 1..{TRAIN_VAL_CHARACTERS - 1}, "
            f"got {val_characters!r}"
        )
    first_val = TRAIN_VAL_CHARACTERS - val_characters
    bounds = {
        "train": (0, first_val),
        "val": (first_val, TRAIN_VAL_CHARACTERS),
        "test": (TRAIN_VAL_CHARACTERS, N_CHARACTERS),
    }
    return {name: torch.arange(ROTATIONS * lo, ROTATIONS * hi) for name, (lo, hi) in bounds.items()}


def omniglot_family(
    folder: str | Path,
    n_way: int = 5,
    k_shot: int = 1,
    n_query: int = 15,
    image_size: int = 28,
    val_characters: int = 100,
) -> NWayKShot:
    """The standard Omniglot few-shot family (split ``"train"``; use ``.split("val" | "test")``).

    Episodes hold ``x [T, n_way * shots, 1, image_size, image_size]`` ink
    fractions; classes are rotated characters as in
    :func:`omniglot_class_splits`. The folder must hold the full data set
    (1623 characters); else DataError.
    """
    splits = omniglot_class_splits(val_characters)
    pool = load_omniglot(folder, image_size)
    if pool.shape[0] != N_CHARACTERS:
        raise DataError(
            f"Omniglot in {folder}: the standard split needs all {N_CHARACTERS} characters "
            f"(964 background + 659 evaluation), got {pool.shape[0]}"
        )
    return NWayKShot(pool, n_way, k_shot, n_query, split_name="train", class_splits=splits, rotations=True)


def _read_images(path: Path) -> np.ndarray:
    """The ``images`` array of one file, bool ``(characters, 20, 105, 105)``, True on the background."""
    if not path.is_file():
        raise DataError(f"Omniglot file {path} is missing; expected {' and '.join(FILES)} in {path.parent}")
    with path.open("rb") as handle, _open_archive(handle, path) as archive:
        missing = [key for key in ("images", "labels") if key not in archive.files]
        if missing:
            raise DataError(
                f"{path} lacks array(s) {missing}; it holds {archive.files}, expected 'images' "
                f"bool (characters, {DRAWERS}, {RAW_SIZE}, {RAW_SIZE}) and 'labels' (characters, {DRAWERS})"
            )
        images, labels = (_read_array(archive, key, path) for key in ("images", "labels"))
    _check_arrays(images, labels, path)
    return images


def _open_archive(handle: BinaryIO, path: Path) -> np.lib.npyio.NpzFile:
    """The archive read from ``handle`` (which stays ours to close, even when numpy fails)."""
    try:
        archive = np.load(handle, allow_pickle=False)
    except _READ_ERRORS as err:
        raise DataError(f"{path} is not a valid .npz archive ({err})") from err
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: expected an .npz archive with arrays 'images' and 'labels', got a single array")
    return archive


def _read_array(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        _check_claimed_size(archive, key, path)
        return archive[key]
    except DataError:
        raise
    except _READ_ERRORS as err:
        raise DataError(f"{path}: array {key!r} cannot be read ({err})") from err


def _check_claimed_size(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> None:
    """Refuse a member whose ``.npy`` header claims more bytes than the member holds (numpy would allocate them first)."""
    members = archive.zip
    assert members is not None  # an NpzFile holds its zip file until it is closed
    member = members.getinfo(f"{key}.npy")
    with members.open(member) as stream:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(stream)
    claimed = math.prod(shape) * dtype.itemsize
    if claimed > member.file_size:
        raise DataError(
            f"{path}: array {key!r} claims shape {tuple(shape)} of {dtype} ({claimed / 2**30:.1f} GiB), "
            f"but the archive holds {member.file_size} bytes for it"
        )


def _check_arrays(images: np.ndarray, labels: np.ndarray, path: Path) -> None:
    expected = (DRAWERS, RAW_SIZE, RAW_SIZE)
    if images.dtype != np.bool_ or images.ndim != 4 or images.shape[1:] != expected or images.shape[0] == 0:
        raise DataError(
            f"{path}: 'images' must be bool (characters >= 1, {DRAWERS}, {RAW_SIZE}, {RAW_SIZE}), "
            f"got {describe(images)}"
        )
    if not np.issubdtype(labels.dtype, np.integer) or labels.shape != images.shape[:2]:
        raise DataError(
            f"{path}: 'labels' must be integer {list(images.shape[:2])} (one per image), got {describe(labels)}"
        )


def _resize(background: np.ndarray, image_size: int) -> torch.Tensor:
    """Bool ``(chars, 20, 105, 105)`` background masks -> ink fractions ``float32 [chars, 20, 1, s, s]``."""
    masks = torch.from_numpy(background)
    out = torch.empty(masks.shape[0], DRAWERS, 1, image_size, image_size)
    buffer = torch.empty(_CHUNK, DRAWERS, RAW_SIZE, RAW_SIZE)
    for start in range(0, masks.shape[0], _CHUNK):
        block = masks[start : start + _CHUNK]
        ink = buffer[: block.shape[0]]
        ink.copy_(torch.logical_not(block))
        out[start : start + block.shape[0], :, 0] = F.adaptive_avg_pool2d(ink, image_size)
    return out
