"""The three kinds of missing data used to train and test gap-filling: cloud blobs, sparse stations, swaths;
and a user's own mask read from a file (:func:`read_mask`).

Every generator returns a boolean *observed* mask ``[H, W]`` (True = the
pixel is seen) and draws its randomness from the ``numpy.random.Generator``
it is given, so a seed fixes the mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metamap.errors import ConfigError, DataError, ShapeError

MASK_KINDS = ("blobs", "stations", "swaths")


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{name} must lie strictly between 0 and 1, got {value}")


def _threshold(score: np.ndarray, missing: float) -> np.ndarray:
    """Observed where ``score`` is below its ``missing`` upper quantile: exactly round(missing * N) pixels hidden."""
    order = np.argsort(score, axis=None, kind="stable")
    n_missing = int(round(missing * score.size))
    observed = np.ones(score.size, dtype=bool)
    observed[order[score.size - n_missing :]] = False
    return observed.reshape(score.shape)


def cloud_blobs(
    shape: tuple[int, int], missing: float, rng: np.random.Generator, n_blobs: int | None = None
) -> np.ndarray:
    """2-3 (or ``n_blobs``) smooth, irregular cloud-like holes covering a ``missing`` fraction of the grid.

    Each blob is an anisotropic Gaussian bump with a rough edge (low-frequency
    noise); the union is thresholded so that exactly ``missing`` of the
    pixels are hidden.
    """
    _check_fraction("missing", missing)
    height, width = shape
    n_blobs = int(rng.integers(2, 4)) if n_blobs is None else n_blobs
    yy, xx = np.meshgrid(np.arange(height) / max(height, width), np.arange(width) / max(height, width), indexing="ij")
    score = np.zeros(shape)
    for _ in range(n_blobs):
        cy, cx = rng.uniform(0, height / max(height, width)), rng.uniform(0, width / max(height, width))
        sy, sx = rng.uniform(0.12, 0.3, size=2)
        angle = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = dy * np.cos(angle) + dx * np.sin(angle)
        v = -dy * np.sin(angle) + dx * np.cos(angle)
        score = np.maximum(score, np.exp(-0.5 * ((u / sy) ** 2 + (v / sx) ** 2)))
    rough = rng.normal(size=(max(height // 6, 2), max(width // 6, 2)))
    from scipy.ndimage import zoom

    rough = zoom(rough, (height / rough.shape[0], width / rough.shape[1]), order=1)[:height, :width]
    return _threshold(score + 0.08 * rough, missing)


def sparse_stations(shape: tuple[int, int], missing: float, rng: np.random.Generator) -> np.ndarray:
    """Isolated observed pixels (weather stations) at random places; ``missing`` of the grid is hidden."""
    _check_fraction("missing", missing)
    return _threshold(rng.random(shape), missing)


def satellite_swaths(shape: tuple[int, int], missing: float, rng: np.random.Generator) -> np.ndarray:
    """Parallel observed stripes at a random angle and phase (a polar orbiter's swaths); ``missing`` is hidden."""
    _check_fraction("missing", missing)
    height, width = shape
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(0.3, 0.6) * max(height, width)
    yy, xx = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    phase = ((yy * np.cos(angle) + xx * np.sin(angle)) / period + rng.uniform()) % 1.0
    return _threshold(phase + 1e-6 * rng.random(shape), missing)


def make_mask(kind: str, shape: tuple[int, int], missing: float, rng: np.random.Generator) -> np.ndarray:
    """An observed mask ``[H, W]`` of ``kind`` (``blobs`` | ``stations`` | ``swaths``) hiding ``missing`` of it."""
    generators = {"blobs": cloud_blobs, "stations": sparse_stations, "swaths": satellite_swaths}
    if kind not in generators:
        raise ConfigError(f"unknown mask kind {kind!r}; expected one of {', '.join(MASK_KINDS)}")
    return generators[kind](shape, missing, rng)


def random_training_mask(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A training mask: a kind drawn uniformly and a missing fraction drawn over that kind's range.

    Ranges: blobs 10-70 %, stations 80-98 %, swaths 20-70 %.
    """
    kind = MASK_KINDS[int(rng.integers(len(MASK_KINDS)))]
    low, high = {"blobs": (0.1, 0.7), "stations": (0.8, 0.98), "swaths": (0.2, 0.7)}[kind]
    return make_mask(kind, shape, float(rng.uniform(low, high)), rng)


def read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """An observed mask ``[H, W]`` from a file: ``.npy`` (no pickles) or netCDF / zarr holding one 2-D
    variable; nonzero finite values = observed, 0 or NaN = missing. Its shape must be the grid's ``shape``
    (in the file's latitude order) (else ShapeError); an unreadable file is a DataError."""
    path = Path(path)
    if path.suffix == ".npy":
        try:
            values = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"--mask {path}: cannot be read as a numpy array without pickles ({exc})") from None
    else:
        from metamap.geo.io import open_dataset

        with open_dataset(path) as ds:
            grids = [name for name, v in ds.data_vars.items() if v.ndim == 2]
            if len(grids) != 1:
                raise DataError(f"--mask {path}: expected one 2-D variable, found {grids or 'none'}")
            values = np.asarray(ds[grids[0]].values)
    if values.shape != tuple(shape):
        raise ShapeError(f"--mask {path}: expected a mask of the grid's shape {list(shape)}, got {list(values.shape)}")
    if not np.issubdtype(values.dtype, np.number) and values.dtype != bool:
        raise DataError(f"--mask {path}: expected numbers or booleans, got {values.dtype}")
    values = values.astype(np.float64)
    return np.isfinite(values) & (values != 0)
