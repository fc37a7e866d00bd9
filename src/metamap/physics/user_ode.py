"""Your own ODE and your own measured trajectories: ``metamap physics fit --rhs ... --params ... --data ...``.

The right-hand side is a Python function ``f(t, y, params) -> dy/dt`` that
the user names on the command line (``module:function`` importable from
``sys.path``, or ``path/to/file.py:function``): ``t`` a float, ``y`` the
state ``[S]``, ``params`` a dict ``{name: value}``; it returns ``[S]``. The
trajectories are a CSV with a column ``t`` (strictly increasing) and one
column per state. Least squares fits the named parameters (bounded by their
ranges ``lo:hi``, random starts inside them) together with the initial state
(unbounded, started from the first row), all states observed.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.integrate import solve_ivp

from metamap.errors import ConfigError, DataError
from metamap.physics.fit import FIT_RTOL, PENALTY, multi_start_fit

Rhs = Callable[[float, np.ndarray, dict[str, float]], object]


def load_rhs(spec: str) -> Rhs:
    """The function named by ``module:function`` or ``file.py:function``; ConfigError if it cannot be found."""
    source, sep, name = spec.rpartition(":")
    if not sep or not source or not name:
        raise ConfigError(f"--rhs: expected module:function or path/to/file.py:function, got {spec!r}")
    if source.endswith(".py"):
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"--rhs: file {path} not found")
        loader_spec = importlib.util.spec_from_file_location(path.stem, path)
        if loader_spec is None or loader_spec.loader is None:
            raise ConfigError(f"--rhs: cannot import {path} as a Python module")
        module = importlib.util.module_from_spec(loader_spec)
        try:
            loader_spec.loader.exec_module(module)
        except (ImportError, SyntaxError) as exc:
            raise ConfigError(f"--rhs: cannot import {path} ({type(exc).__name__}: {exc})") from None
    else:
        try:
            module = importlib.import_module(source)
        except (ImportError, SyntaxError) as exc:
            raise ConfigError(f"--rhs: cannot import module {source!r} ({type(exc).__name__}: {exc})") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise ConfigError(f"--rhs: module {source!r} has no function {name!r}")
    try:
        inspect.signature(function).bind(0.0, np.zeros(1), {})
    except TypeError:
        raise ConfigError(f"--rhs: {name} must take (t, y, params), got {name}{inspect.signature(function)}") from None
    except ValueError:  # no signature to inspect (a builtin): the first call checks it
        pass
    return function


def parse_ranges(text: str) -> dict[str, tuple[float, float]]:
    """``"a=0.1:2,b=0:1"`` -> ``{"a": (0.1, 2.0), "b": (0.0, 1.0)}``; ConfigError unless each is ``name=lo:hi``, lo < hi."""
    ranges: dict[str, tuple[float, float]] = {}
    for item in text.split(","):
        name, _, bounds = item.strip().partition("=")
        low, _, high = bounds.partition(":")
        try:
            pair = (float(low), float(high))
        except ValueError:
            raise ConfigError(f"--params: expected name=lo:hi, got {item.strip()!r}") from None
        if not name.isidentifier() or name in ranges or not (np.isfinite(pair).all() and pair[0] < pair[1]):
            raise ConfigError(f"--params: expected a new name and finite lo < hi in name=lo:hi, got {item.strip()!r}")
        ranges[name] = pair
    return ranges


def read_trajectories(path: Path, state_names: list[str] | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(t [N], states [N, S], state names)`` from a CSV with column ``t`` and one column per state.

    ``state_names``: the columns to read (default: every column other than ``t``). DataError for a missing
    file or column, non-numeric or non-finite values, or times not strictly increasing.
    """
    if not path.is_file():
        raise DataError(f"trajectories file {path} not found")
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: expected a CSV table of trajectories ({type(exc).__name__}: {exc})") from None
    names = state_names if state_names is not None else [str(c) for c in frame.columns if c != "t"]
    missing = [c for c in ("t", *names) if c not in frame.columns]
    if missing or not names:
        raise DataError(
            f"{path}: expected columns t and the states {names}; missing {missing}, got {list(frame.columns)}"
        )
    values = frame[["t", *names]].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        row = int(np.flatnonzero(~np.isfinite(values).all(1))[0])
        raise DataError(f"{path}: expected finite numbers in {['t', *names]}, row {row + 1} is not")
    t = values[:, 0]
    if t.size < 2 or not (np.diff(t) > 0).all():
        raise DataError(f"{path}: expected >= 2 rows with strictly increasing t")
    return t, values[:, 1:], names


@dataclass(frozen=True)
class UserODE:
    """``rhs`` with parameters ``ranges`` (name -> (lo, hi)), over ``n_states`` states."""

    rhs: Rhs
    ranges: dict[str, tuple[float, float]]
    n_states: int

    def derivative(self, t: float, y: np.ndarray, params: np.ndarray) -> np.ndarray:
        """``rhs`` as ``[S]`` float64; DataError for a wrong shape or non-finite values."""
        named = dict(zip(self.ranges, (float(v) for v in params), strict=True))
        try:
            out = np.asarray(self.rhs(t, y, named), dtype=np.float64)
        except (TypeError, ValueError, KeyError, IndexError, ArithmeticError) as exc:
            raise DataError(f"--rhs raised {type(exc).__name__}: {exc}") from None
        if out.shape != (self.n_states,):
            raise DataError(f"--rhs must return dy/dt of shape ({self.n_states},), got shape {out.shape}")
        if not np.isfinite(out).all():
            raise DataError(f"--rhs returned non-finite values {out.tolist()} at t={t:g}, params {named}")
        return out

    def simulate(self, params: np.ndarray, y0: np.ndarray, t: np.ndarray, rtol: float = 1e-8) -> np.ndarray:
        """States ``[N, S]`` at increasing times ``t [N]`` from ``y0 [S]`` at ``t[0]``; DataError if integration fails."""
        sol = solve_ivp(
            self.derivative, (t[0], t[-1]), y0, t_eval=t, args=(params,), rtol=rtol, atol=rtol / 100, method="DOP853"
        )
        if not sol.success:
            raise DataError(
                f"--rhs: integration failed for {dict(zip(self.ranges, params, strict=True))}: {sol.message}"
            )
        return sol.y.T

    def fit(self, t: np.ndarray, states: np.ndarray, n_starts: int, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Least-squares ``(params [P], initial state [S], evaluations)`` for observed ``states [N, S]`` at ``t [N]``."""
        self.derivative(t[0], states[0], np.mean(list(self.ranges.values()), axis=1))  # shape, NaN: fail early
        n_params = len(self.ranges)
        low, high = np.array(list(self.ranges.values())).T

        def residual(z: np.ndarray) -> np.ndarray:
            try:
                return (self.simulate(z[:n_params], z[n_params:], t, rtol=FIT_RTOL) - states).ravel()
            except DataError:
                return np.full(states.size, PENALTY)

        rng = np.random.default_rng(seed)
        starts = np.column_stack(
            [low + (high - low) * rng.random((n_starts, n_params)), np.repeat(states[:1], n_starts, axis=0)]
        )
        unbounded = np.full(self.n_states, np.inf)
        z, calls = multi_start_fit(
            residual, starts, np.concatenate([low, -unbounded]), np.concatenate([high, unbounded])
        )
        return z[:n_params], z[n_params:], calls
