"""Fast ordinary kriging with one variogram fitted on the training fields: the estimate a fill model stands on.

PyKrige (:mod:`metamap.geo.baselines`) fits a variogram to every field and
solves one system over all observed pixels: seconds per field, too slow to
run for every training batch. Here the variogram is fitted once, on
model-space training fields (:meth:`Variogram.fit`), and every missing pixel
is kriged from ``neighbours`` nearby observed pixels (moving-neighbourhood
ordinary kriging with an octant search: the nearest in each of eight
directions first, so that a pixel inside a large gap is kriged from all its
sides, not only from the nearest edge): milliseconds per field, so that
training can condition on the same estimate and standard deviation as a fill.

Distances are in grid rows: a column step counts ``aspect`` rows (its ground
length over a row's, from the grid spacing and the cosine of the mean
latitude), so that the exponential covariance is isotropic on the ground.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from metamap.errors import CheckpointError, DataError

NEIGHBOURS = 16
SECTORS = 8  # octants of the search around each missing pixel (by the signs of the offsets and which is larger)
CANDIDATES = 4  # nearest observed pixels looked at per neighbour kept, to find the octants' nearest
CHUNK = 8192  # missing pixels solved at once: bounds memory on large grids


@dataclass(frozen=True)
class Variogram:
    """Exponential variogram ``gamma(h) = nugget + sill * (1 - exp(-h / length))`` of model-space values,
    ``h`` in grid rows (see :data:`aspect`); ``sill`` 0 for spatially uncorrelated values (kriging is then
    the mean of the neighbours). ``neighbours``: how many observed pixels a missing one is kriged from,
    kept with the variogram so that a run is always kriged as it was trained."""

    nugget: float
    sill: float
    length: float
    aspect: float
    neighbours: int = NEIGHBOURS

    @property
    def total(self) -> float:
        """The variance of one value, ``nugget + sill``."""
        return self.nugget + self.sill

    def covariance(self, distance: np.ndarray) -> np.ndarray:
        """Covariance between pixels ``distance`` rows apart (the nugget only at distance 0)."""
        distance = np.asarray(distance, np.float64)
        return self.sill * np.exp(-distance / self.length) + np.where(distance == 0, self.nugget, 0.0)

    def to_json(self) -> dict[str, float | int]:
        return {key: value if key == "neighbours" else float(value) for key, value in asdict(self).items()}

    @classmethod
    def from_json(cls, data: Any, label: str) -> Variogram:
        """Read what :meth:`to_json` wrote; CheckpointError naming ``label`` when it is not that."""
        try:
            variogram = cls(
                **{key: float(data[key]) for key in ("nugget", "sill", "length", "aspect")},
                neighbours=int(data.get("neighbours", NEIGHBOURS)),  # runs from before the setting used the default
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{label}: no valid kriging variogram ({exc}); train the fill run again") from exc
        if not (
            min(variogram.nugget, variogram.sill) >= 0 < variogram.total
            and variogram.length > 0 < variogram.aspect
            and variogram.neighbours >= 1
        ):
            raise CheckpointError(f"{label}: invalid kriging variogram {variogram.to_json()}")
        return variogram

    @classmethod
    def fit(cls, fields: np.ndarray, aspect: float, neighbours: int = NEIGHBOURS) -> Variogram:
        """Fit to model-space fields ``[N, h, w]`` (NaN = missing): the empirical semivariance at row and
        column lags up to half the patch, fitted by weighted non-negative least squares for each length
        of a log grid, the best length kept; kriging from ``neighbours`` pixels."""
        from scipy.optimize import nnls

        fields = np.asarray(fields, np.float64)
        if fields.ndim != 3 or min(fields.shape[1:]) < 2:
            raise DataError(f"a variogram needs fields [N, h, w] with h, w >= 2, got shape {fields.shape}")
        lags, gammas, counts = [], [], []
        for axis, step in ((1, 1.0), (2, aspect)):
            for lag in range(1, max(2, fields.shape[axis] // 2) + 1):
                if lag >= fields.shape[axis]:
                    break
                first = np.take(fields, np.arange(fields.shape[axis] - lag), axis=axis)
                second = np.take(fields, np.arange(lag, fields.shape[axis]), axis=axis)
                squared = (first - second) ** 2
                finite = np.isfinite(squared)
                if finite.sum() >= 10:
                    lags.append(lag * step)
                    gammas.append(0.5 * squared[finite].mean())
                    counts.append(finite.sum())
        if len(lags) < 2:
            raise DataError("too few finite neighbouring pixels in the training fields to fit a variogram")
        distance, gamma = np.array(lags), np.array(gammas)
        weight = np.sqrt(np.array(counts, np.float64))
        best: tuple[float, float, float, float] | None = None
        for length in np.geomspace(0.1, 50 * distance.max(), 80):
            design = np.stack([np.ones_like(distance), 1 - np.exp(-distance / length)], axis=1) * weight[:, None]
            (nugget, sill), residual = nnls(design, gamma * weight)
            if best is None or residual < best[0]:
                best = (residual, nugget, sill, length)
        if best is None or best[1] + best[2] <= 0:
            raise DataError("the training fields do not vary: there is no variogram to fit")
        return cls(nugget=best[1], sill=best[2], length=best[3], aspect=float(aspect), neighbours=neighbours)


def grid_aspect(lat: np.ndarray, lon: np.ndarray) -> float:
    """Ground length of a column step over a row step on a regular ``lat [H]``, ``lon [W]`` grid (degrees)."""
    lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
    if lat.size < 2 or lon.size < 2:
        return 1.0
    row, column = np.abs(np.diff(lat)).mean(), np.abs(np.diff(lon)).mean() * np.cos(np.deg2rad(lat.mean()))
    return float(column / row) if row > 0 and column > 0 else 1.0


def krige(
    values: np.ndarray, observed: np.ndarray, variogram: Variogram, neighbours: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Ordinary kriging of model-space ``values [H, W]`` from the ``observed [H, W]`` pixels (finite ones),
    each other pixel from ``neighbours`` observed pixels (:func:`octant_neighbours`; default the
    variogram's).

    Returns ``(estimate, std)``, both ``[H, W]`` float32: the observed values with std 0 where observed;
    elsewhere the kriged value and kriging standard deviation. No observed pixel: estimate 0 (the
    climatology) and std ``sqrt(variogram.total)``.
    """
    from scipy.spatial import cKDTree

    values = np.asarray(values, np.float64)
    observed = np.asarray(observed, bool) & np.isfinite(values)
    estimate = np.where(observed, values, 0.0)
    std = np.where(observed, 0.0, np.sqrt(variogram.total))
    if not observed.any() or observed.all():
        return estimate.astype(np.float32), std.astype(np.float32)
    rows, columns = np.indices(values.shape, dtype=np.float64)
    points = np.stack([rows.ravel(), columns.ravel() * variogram.aspect], axis=1)
    known, wanted = points[observed.ravel()], np.flatnonzero(~observed.ravel())
    known_values = values[observed]
    k = min(variogram.neighbours if neighbours is None else neighbours, len(known))
    tree = cKDTree(known)
    for start in range(0, len(wanted), CHUNK):
        targets = wanted[start : start + CHUNK]
        distance, index = octant_neighbours(tree, known, points[targets], k)
        near = known[index]  # [m, k, 2]
        system = np.ones((len(targets), k + 1, k + 1))
        gap = near[:, :, None] - near[:, None]
        system[:, :k, :k] = variogram.covariance(np.sqrt(gap[..., 0] ** 2 + gap[..., 1] ** 2))
        system[:, k, k] = 0.0
        right = np.ones((len(targets), k + 1))
        right[:, :k] = variogram.covariance(np.maximum(distance, 1e-12))
        solution = np.linalg.solve(system, right[..., None])[..., 0]
        weights, multiplier = solution[:, :k], solution[:, k]
        flat = np.unravel_index(targets, values.shape)
        estimate[flat] = (weights * known_values[index]).sum(axis=1)
        variance = variogram.total - (weights * right[:, :k]).sum(axis=1) - multiplier
        std[flat] = np.sqrt(np.maximum(variance, 0.0))
    return estimate.astype(np.float32), std.astype(np.float32)


def octant_neighbours(tree: Any, known: np.ndarray, targets: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(distance, index)``, each ``[m, k]``: for each of the ``targets [m, 2]``, ``k`` of the ``known [n, 2]``
    points (in ``tree``, a ``cKDTree`` of them): among its ``CANDIDATES * k`` nearest, the ``k // SECTORS``
    nearest in each octant first, then the nearest of the rest."""
    pool = min(CANDIDATES * k, len(known))
    distance, index = tree.query(targets, k=pool)
    distance, index = distance.reshape(len(targets), pool), index.reshape(len(targets), pool)
    offset = known[index] - targets[:, None]  # [m, pool, 2]
    dy, dx = offset[..., 0], offset[..., 1]
    sector = 4 * (dy < 0) + 2 * (dx < 0) + (np.abs(dy) > np.abs(dx))  # the octant, 0..7
    # rank of each candidate among the nearer ones of its octant: sort by (octant, distance), count from each
    # octant's first place
    by_sector = np.argsort(sector * pool + np.arange(pool), axis=1)
    grouped = np.take_along_axis(sector, by_sector, axis=1)
    place = np.broadcast_to(np.arange(pool), grouped.shape)
    changes = np.concatenate([np.ones((len(grouped), 1), bool), grouped[:, 1:] != grouped[:, :-1]], axis=1)
    rank_sorted = place - np.maximum.accumulate(np.where(changes, place, 0), axis=1)
    first = np.empty_like(changes)
    np.put_along_axis(first, by_sector, rank_sorted < max(k // SECTORS, 1), axis=1)
    order = np.argsort(np.where(first, 0, pool) + np.arange(pool), axis=1, kind="stable")[:, :k]
    return np.take_along_axis(distance, order, axis=1), np.take_along_axis(index, order, axis=1)
