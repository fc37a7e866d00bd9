"""Load scenarios from simbench's 2016 load profiles, mapped onto a case's loads.

simbench's ``1-HV-mixed--0-no_sw`` network carries 15-minute active-power
profiles for 2016 (35136 steps) of five medium-voltage load types
(``mv_add1, mv_comm, mv_rural, mv_semiurb, mv_urban``). Each load of the
pandapower case gets one type (drawn with a seed). A scenario at step t is::

    pd_l = base_l * m_type(l)(t) / q90_type(l) * (1 + noise * eps_l),   eps_l ~ N(0, 1)

with ``q90`` the 90th percentile of the type's profile over the year: the
case's own loads are read as a high-load condition (reached or exceeded
10% of the year). The multiplicative noise gives each load its own variation; negative
values are clipped to 0.

A regime is a season (``winter`` Dec-Feb, ``spring`` Mar-May, ``summer``
Jun-Aug, ``autumn`` Sep-Nov) and a time of day (``night`` 0-6 h, ``morning``
6-12 h, ``afternoon`` 12-18 h, ``evening`` 18-24 h): its scenarios are drawn
from the steps in that window.

Extracting the profiles from simbench takes ~10 s; :func:`load_profiles`
caches them as ``.npz``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metamap.energy.dcopf import DCOPFCase
from metamap.errors import ConfigError, DataError

SIMBENCH_CODE = "1-HV-mixed--0-no_sw"
SEASONS = {"winter": (12, 1, 2), "spring": (3, 4, 5), "summer": (6, 7, 8), "autumn": (9, 10, 11)}
TIMES_OF_DAY = {"night": (0, 6), "morning": (6, 12), "afternoon": (12, 18), "evening": (18, 24)}


@dataclass(frozen=True)
class Profiles:
    """Load profiles: ``names [K]``, ``values [steps, K]`` (simbench p per unit), ``month``/``hour [steps]``."""

    names: tuple[str, ...]
    values: np.ndarray
    month: np.ndarray
    hour: np.ndarray

    def __post_init__(self) -> None:
        if self.values.ndim != 2 or self.values.shape[1] != len(self.names):
            raise DataError(f"profiles: expected values [steps, {len(self.names)}], got shape {self.values.shape}")
        if not np.isfinite(self.values).all():
            raise DataError("profiles: values must be finite")

    def steps(self, season: str, time_of_day: str) -> np.ndarray:
        """Indices of the steps in a regime's window."""
        if season not in SEASONS:
            raise ConfigError(f"unknown season {season!r}; expected one of {', '.join(SEASONS)}")
        if time_of_day not in TIMES_OF_DAY:
            raise ConfigError(f"unknown time of day {time_of_day!r}; expected one of {', '.join(TIMES_OF_DAY)}")
        lo, hi = TIMES_OF_DAY[time_of_day]
        inside = np.isin(self.month, SEASONS[season]) & (self.hour >= lo) & (self.hour < hi)
        return np.flatnonzero(inside)


def load_profiles(cache: Path | None = None) -> Profiles:
    """simbench's 2016 load profiles (active power), from ``cache`` (.npz) when it exists."""
    if cache is not None and Path(cache).exists():
        with np.load(cache, allow_pickle=False) as data:
            return Profiles(tuple(str(n) for n in data["names"]), data["values"], data["month"], data["hour"])
    import pandas as pd
    import simbench

    table = simbench.get_simbench_net(SIMBENCH_CODE).profiles["load"]
    columns = [c for c in table.columns if c.endswith("_pload")]
    times = pd.to_datetime(table["time"], format="%d.%m.%Y %H:%M")
    profiles = Profiles(
        tuple(c.removesuffix("_pload") for c in columns),
        table[columns].to_numpy(dtype=np.float32),
        times.dt.month.to_numpy(dtype=np.int8),
        times.dt.hour.to_numpy(dtype=np.int8),
    )
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            cache, names=np.array(profiles.names), values=profiles.values, month=profiles.month, hour=profiles.hour
        )
    return profiles


def assign_types(case: DCOPFCase, profiles: Profiles, seed: int = 0) -> np.ndarray:
    """A profile type per load of ``case``: ``[n_load]`` indices into ``profiles.names``."""
    return np.random.default_rng(seed).integers(0, len(profiles.names), size=case.n_load)


def sample_loads(
    case: DCOPFCase,
    profiles: Profiles,
    types: np.ndarray,
    steps: np.ndarray,
    n: int,
    rng: np.random.Generator,
    noise: float = 0.05,
) -> np.ndarray:
    """``n`` load scenarios ``[n, n_load]`` MW drawn from the profile ``steps`` (see module doc)."""
    if steps.size == 0:
        raise DataError("sample_loads: the regime window holds no profile step")
    peak = np.quantile(profiles.values, 0.9, axis=0)
    chosen = rng.choice(steps, size=n)
    multiplier = profiles.values[chosen][:, types] / peak[types]
    jitter = 1.0 + noise * rng.standard_normal((n, case.n_load))
    return np.clip(case.base_load * multiplier * jitter, 0.0, None)


def synthetic_profiles(n_days: int = 28, seed: int = 0) -> Profiles:
    """Small daily-cycle profiles with the simbench layout (for tests without simbench): 3 types, 15 min."""
    rng = np.random.default_rng(seed)
    steps = n_days * 96
    hour = (np.arange(steps) % 96) // 4
    day = np.arange(steps) // 96
    month = (1 + (day * 12) // max(n_days, 1)).clip(1, 12)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    values = 0.6 + 0.3 * np.sin(2 * np.pi * hour[:, None] / 24 + phase) + 0.05 * rng.standard_normal((steps, 3))
    return Profiles(("a", "b", "c"), values.astype(np.float32), month.astype(np.int8), hour.astype(np.int8))
