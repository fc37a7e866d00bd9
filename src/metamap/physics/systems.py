"""Parametric physical systems: the task families of :mod:`metamap.physics`.

Each system maps its physical parameters and observation times to observed
states, ``simulate(params [P], t [N]) -> [N, n_out]`` (heat: ``t`` and
position ``x``, both ``[N]``). Initial conditions are fixed per system and
known; the parameters vary between tasks, drawn uniformly from ``ranges``.

- ``oscillator``: x'' + 2 zeta omega0 x' + omega0^2 x = F cos(omega_d t),
  x(0) = 1, x'(0) = 0; params (omega0 [rad/s], zeta, F [1/s^2], omega_d [rad/s]);
  observes x; t in [0, 6] s.
- ``pendulum``: theta'' = -(g / L) sin(theta) - b theta', g = 9.81 m/s^2,
  theta(0) = 1 rad, theta'(0) = 0; params (L [m], b [1/s]); observes theta;
  t in [0, 4] s.
- ``small_angle_pendulum`` (``SMALL_ANGLE_PENDULUM``, not a task family):
  the pendulum with sin(theta) replaced by theta, the equation a fit of the
  pendulum's data assumes when it is misspecified.
- ``lotka_volterra``: x' = alpha x - beta x y, y' = delta x y - gamma y,
  (x, y)(0) = (1.5, 1.0); params (alpha, beta, gamma, delta); observes
  (x, y); t in [0, 10].
- ``heat``: u_t = kappa u_xx on x in [0, 1], u = 0 at both ends,
  u(0, x) = sin(pi x) + 0.5 sin(3 pi x); param kappa; observes u(t, x);
  t in [0, 1]. Method of lines: second differences on ``HEAT_POINTS``
  interior points; the linear ODE system is integrated exactly through the
  eigendecomposition of its (symmetric) matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.integrate import solve_ivp

from metamap.errors import ConfigError, DataError, ShapeError, describe

G = 9.81
HEAT_POINTS = 63
RTOL = 1e-8  # relative tolerance of the ODE integrator (DOP853); absolute tolerance RTOL / 100


@dataclass(frozen=True)
class System:
    """A parametric family: ``names`` of the parameters, their sampling ``ranges`` and physical ``lower`` bounds."""

    name: str
    names: tuple[str, ...]
    ranges: tuple[tuple[float, float], ...]
    lower: tuple[float, ...]
    t_max: float
    n_out: int
    n_in: int = 1

    def check(self, params: np.ndarray) -> np.ndarray:
        """``params [P]`` as float64; DataError for unphysical values (below ``lower``, or not finite)."""
        params = np.asarray(params, dtype=np.float64)
        if params.shape != (len(self.names),):
            raise ShapeError(f"{self.name}: expected {len(self.names)} parameters {self.names}, got {describe(params)}")
        bad = [
            f"{n}={v:g} (must be {'>' if lo == 0 and n in _STRICT else '>='} {lo:g})"
            for n, v, lo in zip(self.names, params, self.lower)
            if not np.isfinite(v) or v < lo or (v == lo and n in _STRICT)
        ]
        if bad:
            raise DataError(f"{self.name}: unphysical parameter(s) {', '.join(bad)}")
        return params

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``[n, P]`` parameters drawn uniformly from ``ranges``."""
        low, high = np.array(self.ranges).T
        return low + (high - low) * rng.random((n, len(self.names)))

    def simulate(
        self, params: np.ndarray, t: np.ndarray, x: np.ndarray | None = None, rtol: float = RTOL
    ) -> np.ndarray:
        """Observed states ``[N, n_out]`` at times ``t [N]`` (any order, in [0, t_max]; heat also ``x [N]``).

        ``rtol``: the ODE integrator's relative tolerance (fits use a looser one for speed).
        """
        params = self.check(params)
        t = np.asarray(t, dtype=np.float64)
        if t.ndim != 1 or (t.size and (t.min() < 0 or t.max() > self.t_max + 1e-9)):
            raise ShapeError(f"{self.name}: times must be [N] within [0, {self.t_max}], got {describe(t)}")
        if self.name == "heat":
            return heat_solution(params[0], t, x)
        order = np.argsort(t)
        sol = solve_ivp(
            _RHS[self.name],
            (0.0, self.t_max),
            _INITIAL[self.name],
            t_eval=t[order],
            args=(params,),
            rtol=rtol,
            atol=rtol / 100,
            method="DOP853",
        )
        if not sol.success:
            raise DataError(f"{self.name}: integration failed for {dict(zip(self.names, params))}: {sol.message}")
        states = np.empty((t.size, self.n_out))
        states[order] = sol.y[: self.n_out].T
        return states


_STRICT = ("omega0", "L", "alpha", "beta", "gamma", "delta", "kappa")


def _oscillator(t, s, p):
    omega0, zeta, force, omega_d = p
    return [s[1], force * np.cos(omega_d * t) - 2 * zeta * omega0 * s[1] - omega0**2 * s[0]]


def _pendulum(t, s, p):
    length, damping = p
    return [s[1], -(G / length) * np.sin(s[0]) - damping * s[1]]


def _small_angle(t, s, p):
    length, damping = p
    return [s[1], -(G / length) * s[0] - damping * s[1]]


def _lotka_volterra(t, s, p):
    alpha, beta, gamma, delta = p
    return [alpha * s[0] - beta * s[0] * s[1], delta * s[0] * s[1] - gamma * s[1]]


_RHS = {
    "oscillator": _oscillator,
    "pendulum": _pendulum,
    "small_angle_pendulum": _small_angle,
    "lotka_volterra": _lotka_volterra,
}
_INITIAL = {
    "oscillator": [1.0, 0.0],
    "pendulum": [1.0, 0.0],
    "small_angle_pendulum": [1.0, 0.0],
    "lotka_volterra": [1.5, 1.0],
}


class _HeatModes:
    """Eigendecomposition of the method-of-lines Laplacian on ``HEAT_POINTS`` interior points of [0, 1]."""

    @cached_property
    def grid(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, HEAT_POINTS + 2)[1:-1]

    @cached_property
    def decomposition(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h = 1.0 / (HEAT_POINTS + 1)
        laplacian = (
            np.diag(-2.0 * np.ones(HEAT_POINTS))
            + np.diag(np.ones(HEAT_POINTS - 1), 1)
            + np.diag(np.ones(HEAT_POINTS - 1), -1)
        ) / h**2
        eigenvalues, vectors = np.linalg.eigh(laplacian)
        return eigenvalues, vectors, vectors.T @ heat_initial(self.grid)


_HEAT = _HeatModes()


def heat_initial(x: np.ndarray) -> np.ndarray:
    """The fixed initial temperature u(0, x) = sin(pi x) + 0.5 sin(3 pi x)."""
    return np.sin(np.pi * x) + 0.5 * np.sin(3 * np.pi * x)


def heat_solution(kappa: float, t: np.ndarray, x: np.ndarray | None) -> np.ndarray:
    """Method-of-lines u(t, x) ``[N, 1]``, linearly interpolated between grid points (0 at the walls)."""
    if x is None or np.shape(x) != np.shape(t):
        raise ShapeError(f"heat: positions x must accompany the times t, got {describe(x)} for {describe(t)}")
    x = np.asarray(x, dtype=np.float64)
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ShapeError("heat: positions x must lie in [0, 1]")
    eigenvalues, vectors, coefficients = _HEAT.decomposition
    fields = (vectors * coefficients) @ np.exp(kappa * eigenvalues[:, None] * t[None, :])  # [points, N]
    grid = np.concatenate([[0.0], _HEAT.grid, [1.0]])
    padded = np.concatenate([np.zeros((1, t.size)), fields, np.zeros((1, t.size))])
    index = np.clip(np.searchsorted(grid, x) - 1, 0, grid.size - 2)
    weight = (x - grid[index]) / (grid[index + 1] - grid[index])
    columns = np.arange(t.size)
    return ((1 - weight) * padded[index, columns] + weight * padded[index + 1, columns])[:, None]


SYSTEMS = {
    "oscillator": System(
        "oscillator",
        ("omega0", "zeta", "F", "omega_d"),
        ((1.0, 2.0), (0.05, 0.3), (0.2, 1.0), (0.5, 2.0)),
        (0.0, 0.0, 0.0, 0.0),
        6.0,
        1,
    ),
    "pendulum": System("pendulum", ("L", "b"), ((0.5, 2.0), (0.05, 0.5)), (0.0, 0.0), 4.0, 1),
    "lotka_volterra": System(
        "lotka_volterra", ("alpha", "beta", "gamma", "delta"), ((0.6, 1.4),) * 4, (0.0,) * 4, 10.0, 2
    ),
    "heat": System("heat", ("kappa",), ((0.02, 0.2),), (0.0,), 1.0, 1, n_in=2),
}


# The pendulum's approximate equation (sin(theta) ~ theta), wrong at theta(0) = 1 rad: the misspecified model.
SMALL_ANGLE_PENDULUM = System("small_angle_pendulum", ("L", "b"), SYSTEMS["pendulum"].ranges, (0.0, 0.0), 4.0, 1)


def get_system(name: str) -> System:
    if name not in SYSTEMS:
        raise ConfigError(f"unknown physical system {name!r}; expected one of {', '.join(SYSTEMS)}")
    return SYSTEMS[name]
