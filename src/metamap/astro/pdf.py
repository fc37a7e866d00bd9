"""Redshift PDFs from the residuals of similar galaxies, calibrated on validation folds.

An object's PDF is its point estimate ``z_hat`` plus ``(1 + z_hat)`` times
the out-of-fold residuals ``r = (z_spec - z_oof) / (1 + z_oof)`` of its
``neighbours`` nearest calibration galaxies in feature space, read at M
levels: the PDF is M quantiles ``[N, M]``, at levels ``(j - 0.5) / M``
once calibrated. Calibration (Kuleshov et al. 2018, by quantile): the
validation PITs ``p`` map each level ``u`` to the level ``quantile(p, u)``
at which the neighbours' residuals are read, so that on validation the PIT
is uniform by construction.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.neighbors import NearestNeighbors

from metamap.astro.metrics import crps, pit
from metamap.errors import ConfigError, ShapeError, describe

N_LEVELS = 100
GRID = (np.arange(N_LEVELS) + 0.5) / N_LEVELS  # the levels of a calibrated PDF's quantiles
NEIGHBOUR_CANDIDATES = (10, 25, 50, 100, 200, 400, 800, 1600)
QUERY_CHUNK = 20_000  # objects per neighbour query: [chunk, neighbours] residuals in memory at once

PdfSupport = tuple[np.ndarray, np.ndarray]  # calibration features [N, F] and residuals [N]
PdfInputs = tuple[np.ndarray, np.ndarray]  # features [Q, F] and point estimates z_hat [Q]


class LocalResiduals:
    """The :class:`~metamap.experiment.Method` of the PDF: ``adapt((x, r), neighbours=k)`` on calibration
    galaxies, ``predict((x [Q, F], z_hat [Q])) -> quantiles [Q, M]`` at the residual ``levels`` (``GRID``
    uncalibrated)."""

    def __init__(self, levels: np.ndarray = GRID) -> None:
        self.levels = np.asarray(levels, dtype=np.float64)

    def fit(self, source: Any) -> None:
        """Learns nothing beyond the calibration set given to :meth:`adapt`."""

    def adapt(self, support: PdfSupport, *, neighbours: int) -> None:
        x, residual = support
        if x.ndim != 2 or residual.shape != x.shape[:1]:
            raise ShapeError(f"expected x [N, F] and residuals [N], got {describe(x)} and {describe(residual)}")
        if neighbours < 1:
            raise ConfigError(f"neighbours must be >= 1, got {neighbours}")
        self.neighbours = min(neighbours, len(residual))
        self.index = NearestNeighbors(n_neighbors=self.neighbours).fit(x)
        self.residual = residual

    def with_levels(self, levels: np.ndarray) -> LocalResiduals:
        """The same adapted PDF read at other residual ``levels [M']`` (e.g. ``GRID``: uncalibrated)."""
        other = LocalResiduals(levels)
        other.neighbours, other.index, other.residual = self.neighbours, self.index, self.residual
        return other

    def predict(self, x: PdfInputs) -> np.ndarray:
        features, z_hat = x
        out = np.empty((len(z_hat), self.levels.size))
        for start in range(0, len(z_hat), QUERY_CHUNK):
            rows = slice(start, start + QUERY_CHUNK)
            near = self.index.kneighbors(features[rows], return_distance=False)
            r = np.quantile(self.residual[near], self.levels, axis=1).T
            out[rows] = z_hat[rows, None] + (1.0 + z_hat[rows, None]) * r
        return out


def mean_crps(quantiles: list[np.ndarray], truths: list[np.ndarray]) -> float:
    """Mean CRPS over every object of every validation fold (the score :func:`choose_on_validation` minimizes)."""
    return float(np.mean(crps(np.concatenate(quantiles), np.concatenate(truths))))


def calibrated_levels(pit_values: np.ndarray) -> np.ndarray:
    """The residual levels ``[M]`` that make the validation PIT uniform: ``quantile(pit_values, GRID)``."""
    return np.quantile(np.asarray(pit_values, dtype=np.float64), GRID)


def validation_pit(quantiles: list[np.ndarray], truths: list[np.ndarray]) -> np.ndarray:
    """PIT ``[N]`` of the uncalibrated validation PDFs (quantiles at ``GRID``) at the true redshifts."""
    return pit(np.concatenate(quantiles), np.concatenate(truths))
