"""Least-squares fit of the known equation: the baseline that knows the physics.

``scipy.optimize.least_squares`` (trust-region reflective, bounded) from
several random starts; the fit with the lowest cost wins. The equations are
integrated with relative tolerance ``FIT_RTOL`` inside the fit. Bounds are the
sampling ranges widened by half their width on each side (kept physical).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.optimize import least_squares

from metamap.errors import DataError, ShapeError, describe
from metamap.physics.systems import System

PENALTY = 1e3  # residual of a parameter set whose integration fails
FIT_RTOL = 1e-6  # integrator tolerance inside the fit (far below the observation noise)


def fit_bounds(system: System) -> tuple[np.ndarray, np.ndarray]:
    low, high = np.array(system.ranges).T
    width = high - low
    return np.maximum(low - 0.5 * width, np.array(system.lower) + 1e-6), high + 0.5 * width


def least_squares_fit(
    system: System,
    t: np.ndarray,
    y: np.ndarray,
    x: np.ndarray | None = None,
    *,
    n_starts: int = 4,
    seed: int = 0,
    max_nfev: int = 200,
) -> np.ndarray:
    """Parameters ``[P]`` that best fit observations ``y [N, n_out]`` at times ``t [N]`` (heat: positions ``x``)."""
    starts = system.sample(n_starts, np.random.default_rng(seed))
    return fit_from_starts(system, t, y, x, starts, max_nfev=max_nfev)[0]


def fit_from_starts(
    system: System,
    t: np.ndarray,
    y: np.ndarray,
    x: np.ndarray | None,
    starts: np.ndarray,
    *,
    max_nfev: int = 200,
) -> tuple[np.ndarray, int]:
    """The best of the least-squares fits from each of ``starts [S, P]``: ``(params [P], evaluations)``.

    ``evaluations`` counts every simulation of the equation, the finite-difference Jacobians' included.
    """
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(t.size, -1)
    if y.shape[1] != system.n_out or not np.isfinite(y).all():
        raise ShapeError(f"{system.name}: expected finite observations [N, {system.n_out}], got {describe(y)}")
    low, high = fit_bounds(system)

    def residual(p: np.ndarray) -> np.ndarray:
        try:
            return (system.simulate(p, t, x, rtol=FIT_RTOL) - y).ravel()
        except DataError:
            return np.full(y.size, PENALTY)

    return multi_start_fit(residual, starts, low, high, max_nfev=max_nfev)


def multi_start_fit(
    residual: Callable[[np.ndarray], np.ndarray],
    starts: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    *,
    max_nfev: int = 200,
) -> tuple[np.ndarray, int]:
    """Bounded least squares of ``residual(p [P]) -> [M]`` from each of ``starts [S, P]`` (clipped into
    ``[low, high]``); the lowest cost wins. Returns ``(p [P], evaluations of residual)``."""
    calls = 0

    def counted(p: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        return residual(p)

    fits = [
        least_squares(counted, np.clip(p0, low, high), bounds=(low, high), max_nfev=max_nfev)
        for p0 in np.atleast_2d(starts)
    ]
    return min(fits, key=lambda f: f.cost).x, calls
