"""TrafficData: one city's (or district's) detector readings in memory.

The field's layout (tsl / BasicTS): ``[time, node]`` values with an explicit
mask. Missing readings (NaN, the file's missing-value codes and, for speed
data, zeros) arrive here as ``mask == False`` with value 0.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from metamap.errors import ConfigError, DataError, ShapeError, describe


@dataclass(frozen=True)
class TrafficData:
    """Readings of N sensors at T regular time steps.

    Attributes:
        values: ``float32 [T, N]`` readings (speed in mph for METR-LA/PeMS
            speed; the file's unit otherwise); 0 where missing.
        mask: ``bool [T, N]``; True where a reading exists.
        times: ``datetime64[ns] [T]`` local wall-clock times, ``step_minutes``
            apart (except across a daylight-saving change of ``timezone``);
            calendar features (time of day, weekend) are read from them.
        sensor_ids: the N sensor ids, in column order.
        step_minutes: minutes between consecutive time steps; divides a day.
        adjacency: ``float32 [N, N]`` edge weights (row = from, column = to),
            or None when no graph was given.
        coords: ``float64 [N, 2]`` latitude, longitude in degrees, or None.
        name: a short label for reports (e.g. the file stem).
        timezone: the zone of ``times`` (e.g. ``"America/Los_Angeles"``), or
            None when the file named none.
    """

    values: np.ndarray
    mask: np.ndarray
    times: np.ndarray
    sensor_ids: tuple[str, ...]
    step_minutes: int
    adjacency: np.ndarray | None = None
    coords: np.ndarray | None = None
    name: str = "traffic"
    timezone: str | None = None

    def __post_init__(self) -> None:
        t, n = self.values.shape if self.values.ndim == 2 else (None, None)
        if t is None:
            raise ShapeError(f"TrafficData.values: expected [time, sensors], got {describe(self.values)}")
        if self.mask.shape != (t, n) or self.mask.dtype != np.bool_:
            raise ShapeError(f"TrafficData.mask: expected bool[{t}, {n}], got {describe(self.mask)}")
        if self.times.shape != (t,):
            raise ShapeError(f"TrafficData.times: expected [{t}] timestamps, got {describe(self.times)}")
        if len(self.sensor_ids) != n:
            raise ShapeError(f"TrafficData.sensor_ids: expected {n} ids, got {len(self.sensor_ids)}")
        if self.adjacency is not None and self.adjacency.shape != (n, n):
            raise ShapeError(f"TrafficData.adjacency: expected [{n}, {n}], got {describe(self.adjacency)}")
        if self.coords is not None and self.coords.shape != (n, 2):
            raise ShapeError(f"TrafficData.coords: expected [{n}, 2] (lat, lon), got {describe(self.coords)}")

    @property
    def n_steps(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_sensors(self) -> int:
        return int(self.values.shape[1])

    @property
    def steps_per_day(self) -> int:
        return 24 * 60 // self.step_minutes

    @property
    def holds_counts(self) -> bool:
        """Whether every observed reading is a non-negative integer (counts or flows, not speeds)."""
        observed = self.values[self.mask]
        return bool(observed.size and (observed >= 0).all() and (observed == np.round(observed)).all())

    def sensors(self, index: np.ndarray) -> TrafficData:
        """The same data restricted to the sensors ``index`` (ints, in the given order)."""
        index = np.asarray(index, dtype=np.int64)
        adjacency = None if self.adjacency is None else self.adjacency[np.ix_(index, index)]
        coords = None if self.coords is None else self.coords[index]
        return replace(
            self,
            values=self.values[:, index],
            mask=self.mask[:, index],
            sensor_ids=tuple(self.sensor_ids[i] for i in index),
            adjacency=adjacency,
            coords=coords,
        )

    def steps(self, start: int, stop: int) -> TrafficData:
        """The time steps ``start:stop``."""
        return replace(self, values=self.values[start:stop], mask=self.mask[start:stop], times=self.times[start:stop])

    def resampled(self, step_minutes: int) -> TrafficData:
        """The readings averaged over blocks of ``step_minutes`` (a multiple of the step that divides a day).

        A block's value is the mean of its observed readings, missing where
        none is observed; its time is the block's first. Trailing steps that
        do not fill a block are dropped.
        """
        if step_minutes % self.step_minutes or (24 * 60) % step_minutes:
            raise ConfigError(
                f"resample: expected a multiple of the data's {self.step_minutes}-minute step that divides a day, "
                f"got {step_minutes} minutes"
            )
        factor = step_minutes // self.step_minutes
        blocks = self.n_steps // factor
        if blocks == 0:
            raise DataError(
                f"resample: {self.name} holds {self.n_steps} steps, fewer than one {step_minutes}-minute block"
            )
        shape = (blocks, factor, self.n_sensors)
        mask = self.mask[: blocks * factor].reshape(shape)
        values = self.values[: blocks * factor].reshape(shape)
        counts = mask.sum(axis=1)
        total = np.where(mask, values, 0.0).sum(axis=1)
        means = np.divide(total, counts, out=np.zeros_like(total), where=counts > 0).astype(np.float32)
        return replace(
            self, values=means, mask=counts > 0, times=self.times[: blocks * factor : factor], step_minutes=step_minutes
        )
