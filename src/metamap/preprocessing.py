"""One masked standardizer for every domain: ``z = (x - mean_) / scale_``.

In scikit-learn's spirit: the choices are constructor parameters, ``fit``
learns the statistics from training data only, ``transform`` and
``inverse_transform`` apply them, and fitted attributes end in ``_``.

- ``axis``: the axes the mean is pooled over (``None``: all of them). Every
  other axis keeps its own mean, e.g. ``axis=0`` on ``[time, lat, lon]`` is a
  per-pixel climatology ``[lat, lon]``.
- ``scale_axis``: the axes the spread is pooled over; it must include
  ``axis`` (default: the same axes). ``axis=0, scale_axis=None`` gives a mean
  per pixel and one scalar spread of the anomalies ``x - mean_``.
- ``floor``: the smallest spread (spreads below are raised to it);
  ``None`` refuses a zero spread with a :class:`DataError` instead.
- ``ddof``: the spread divides the squared anomalies by ``count - ddof``.

Missing values follow one convention in the whole library: a bool ``mask``
beside the values, True = valid. Entries where the mask is False are
ignored whatever they hold; NaN or inf where the mask says valid is a
:class:`DataError`. A mean element with no valid value (a pixel that is
never observed) gets mean 0.

Statistics are computed in the data's floating dtype (float32 data: float32
sums; integer data: float64) and kept as float64 arrays. ``transform`` works
in the input's dtype and returns the input's kind (numpy array or torch
tensor); NaN stays NaN, so a NaN-coded field can be transformed as it is.

``partial_fit`` streams: it keeps float64 counts, sums and sums of squares
per mean element, so a dataset larger than memory is fitted one piece at a
time. It agrees with ``fit`` on the same data up to rounding (``fit`` takes
two passes: the mean, then the squared anomalies). A spread that is zero or
rests on fewer than two values after ``partial_fit`` is refused when the
statistics are first used, since a later piece may still bring variation.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import torch

from metamap.errors import CheckpointError, ConfigError, DataError, ShapeError, describe

Axes = int | tuple[int, ...] | None
ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)
STATE_KEYS = ("axis", "scale_axis", "floor", "ddof", "name", "mean", "scale")


class Standardizer:
    """Masked standardization ``z = (x - mean_) / scale_`` with statistics from training data.

    Args:
        axis: axes the mean is pooled over (int, tuple of ints, or None = all).
        scale_axis: axes the spread is pooled over; must contain ``axis``
            ("same", the default: ``axis``; None: all axes).
        floor: smallest allowed spread; None refuses a zero spread.
        ddof: delta degrees of freedom of the spread (0: population, 1: sample).
        name: what the data are, for error messages ("training readings").

    Fitted attributes (float64 arrays; the pooled leading axes are dropped,
    every other pooled axis kept with size 1, so they broadcast against the
    data):
        mean_: the mean of the valid entries per unpooled element.
        scale_: the spread of the valid anomalies ``x - mean_``, floored.
        n_samples_seen_: int64, the valid entries behind each element of
            ``mean_`` (set by ``fit`` and ``partial_fit``, not saved).
    """

    def __init__(
        self,
        axis: Axes = None,
        scale_axis: Axes | str = "same",
        floor: float | None = None,
        ddof: int = 0,
        name: str = "data",
    ) -> None:
        if scale_axis == "same":
            scale_axis = axis
        if isinstance(scale_axis, str):
            raise ConfigError(f"Standardizer: scale_axis must be axes, None or 'same', got {scale_axis!r}")
        if floor is not None and not floor > 0:
            raise ConfigError(f"Standardizer: floor must be > 0 or None (refuse a zero spread), got {floor}")
        if ddof < 0:
            raise ConfigError(f"Standardizer: ddof must be >= 0, got {ddof}")
        self.axis = _as_axes(axis)
        self.scale_axis = _as_axes(scale_axis)
        self.floor = None if floor is None else float(floor)
        self.ddof = int(ddof)
        self.name = name
        self._mean: np.ndarray | None = None
        self._scale: np.ndarray | None = None
        self._unusable: str | None = None  # why streamed statistics cannot be used (yet)
        self._sums: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # count, sum, sum of squares
        self.n_samples_seen_: np.ndarray | None = None

    # ------------------------------------------------------------------ fitting

    def fit(self, x: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor | None = None) -> Standardizer:
        """Learn ``mean_`` and ``scale_`` from ``x`` where ``mask`` (bool, same shape, True = valid) holds."""
        data, valid = self._check(x, mask, "fit")
        mean_axes, scale_axes = self._resolve(data.ndim)
        if len(mean_axes) == data.ndim:  # everything pooled: the valid entries as one flat vector
            values = data[valid]
            self._require_count(np.array(values.size))
            mean = np.asarray(values.mean()).reshape((1,) * data.ndim)
            scale = np.asarray(values.std(ddof=self.ddof)).reshape((1,) * data.ndim)
            count = np.array(values.size).reshape((1,) * data.ndim)
        else:
            count = valid.sum(mean_axes, keepdims=True)
            total = np.where(valid, data, 0).sum(mean_axes, keepdims=True)
            mean = total / np.maximum(count, 1).astype(data.dtype)
            scale_count = valid.sum(scale_axes, keepdims=True)
            self._require_count(scale_count)
            squares = (np.where(valid, data - mean, 0) ** 2).sum(scale_axes, keepdims=True)
            scale = np.sqrt(squares / (scale_count - self.ddof).astype(data.dtype))
        problem = self._spread_problem(scale)
        if problem:
            raise DataError(problem)
        self._store(mean, scale, count, mean_axes, scale_axes)
        self._sums, self._unusable = None, None
        return self

    def partial_fit(self, x: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor | None = None) -> Standardizer:
        """Add the piece ``x`` (with ``mask`` as in :meth:`fit`) to the streamed statistics.

        Pieces are cut along the pooled axes and must agree on every other
        one (e.g. time steps ``[1, H, W]`` of a field pooled over time).
        """
        data, valid = self._check(x, mask, "partial_fit")
        mean_axes, scale_axes = self._resolve(data.ndim)
        clean = np.where(valid, data, 0).astype(np.float64)
        piece_count = valid.sum(mean_axes, keepdims=True)
        piece_total = clean.sum(mean_axes, keepdims=True)
        piece_total_sq = (clean**2).sum(mean_axes, keepdims=True)
        if self._sums is None:
            zeros = np.zeros(piece_total.shape)  # never updated in place: the sums below are new arrays
            self._sums = (zeros, zeros, zeros)
        count, total, total_sq = self._sums
        if count.shape != piece_total.shape:
            raise ShapeError(
                f"Standardizer.partial_fit ({self.name}): the piece {describe(data)} reduces to "
                f"{piece_total.shape}, earlier pieces to {count.shape}"
            )
        count, total, total_sq = count + piece_count, total + piece_total, total_sq + piece_total_sq
        self._sums = (count, total, total_sq)
        mean = total / np.maximum(count, 1)
        scale_count = count.sum(scale_axes, keepdims=True)
        squares = (total_sq - count * mean**2).sum(scale_axes, keepdims=True)
        scale = np.sqrt(np.maximum(squares / np.maximum(scale_count - self.ddof, 1), 0.0))
        self._unusable = self._count_problem(scale_count) or self._spread_problem(scale)
        self._store(mean, scale, count.astype(np.int64), mean_axes, scale_axes)
        return self

    # ---------------------------------------------------------------- applying

    @property
    def mean_(self) -> np.ndarray:
        """The fitted mean (float64); ConfigError before fit, DataError for unusable streamed statistics."""
        return self._fitted()[0]

    @property
    def scale_(self) -> np.ndarray:
        """The fitted spread (float64, floored, > 0); errors as :attr:`mean_`."""
        return self._fitted()[1]

    def transform(self, x: ArrayOrTensor) -> ArrayOrTensor:
        """``(x - mean_) / scale_`` in ``x``'s floating dtype, of ``x``'s kind; ``x`` broadcasts with the stats."""
        mean, scale = self._fitted()
        if isinstance(x, torch.Tensor):
            values = x if x.is_floating_point() else x.to(torch.get_default_dtype())
            return (values - _tensor(mean, values)) / _tensor(scale, values)
        data = _floating(np.asarray(x))
        standardized: np.ndarray = (data - mean.astype(data.dtype)) / scale.astype(data.dtype)
        return standardized

    def inverse_transform(self, z: ArrayOrTensor) -> ArrayOrTensor:
        """``z * scale_ + mean_``: standardized values back in the data's unit, as :meth:`transform`."""
        mean, scale = self._fitted()
        if isinstance(z, torch.Tensor):
            values = z if z.is_floating_point() else z.to(torch.get_default_dtype())
            return values * _tensor(scale, values) + _tensor(mean, values)
        data = _floating(np.asarray(z))
        in_unit: np.ndarray = data * scale.astype(data.dtype) + mean.astype(data.dtype)
        return in_unit

    def subset(self, *index: slice | int) -> Standardizer:
        """The standardizer of a part of the data, e.g. ``subset(slice(i, i + h), slice(j, j + w))`` for a
        ``[h, w]`` patch of a ``[H, W]`` climatology: both statistics broadcast to their common shape and indexed."""
        mean, scale = self._fitted()
        shape = np.broadcast_shapes(mean.shape, scale.shape)
        part = Standardizer(self.axis, self.scale_axis, self.floor, self.ddof, self.name)
        part._mean, part._scale = np.broadcast_to(mean, shape)[index], np.broadcast_to(scale, shape)[index]
        return part

    # ---------------------------------------------------------------- saving

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters, JSON-ready (axes as lists)."""
        return {
            "axis": _axes_json(self.axis),
            "scale_axis": _axes_json(self.scale_axis),
            "floor": self.floor,
            "ddof": self.ddof,
            "name": self.name,
        }

    def state_dict(self) -> dict[str, Any]:
        """Parameters and fitted statistics as plain lists/floats (for a run folder's JSON)."""
        mean, scale = self._fitted()
        return {**self.get_params(), "mean": mean.tolist(), "scale": scale.tolist()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Standardizer:
        """Rebuild a fitted standardizer from :meth:`state_dict` (``mean``/``scale`` may also be arrays);
        CheckpointError when keys are missing or the statistics are unusable."""
        missing = [key for key in STATE_KEYS if key not in state] if isinstance(state, dict) else list(STATE_KEYS)
        if missing:
            raise CheckpointError(f"not a saved Standardizer: missing {', '.join(missing)}")
        try:
            params = {key: state[key] for key in STATE_KEYS[:5]}
            for key in ("axis", "scale_axis"):
                params[key] = tuple(params[key]) if isinstance(params[key], list) else params[key]
            standardizer = cls(**params)
            mean, scale = (np.asarray(state[key], dtype=np.float64) for key in ("mean", "scale"))
            np.broadcast_shapes(mean.shape, scale.shape)
        except (ConfigError, TypeError, ValueError) as exc:
            raise CheckpointError(f"not a saved Standardizer ({exc})") from None
        if not (np.isfinite(mean).all() and np.isfinite(scale).all() and (scale > 0).all()):
            raise CheckpointError(f"saved Standardizer of {state['name']}: statistics must be finite, spread > 0")
        standardizer._mean, standardizer._scale = mean, scale
        return standardizer

    # ---------------------------------------------------------------- checks

    def _check(
        self, x: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor | None, verb: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """``x`` as a floating numpy array and the validity mask as bool of its shape."""
        data = _floating(_numpy(x))
        if mask is None:
            valid = np.ones(data.shape, bool)
        else:
            valid = _numpy(mask)
            if valid.dtype != np.bool_ or valid.shape != data.shape:
                raise ShapeError(
                    f"Standardizer.{verb} ({self.name}): expected a bool mask of shape {data.shape} "
                    f"(True = valid), got {describe(valid)}"
                )
        bad = int((valid & ~np.isfinite(data)).sum())
        if bad:
            raise DataError(
                f"{self.name}: {bad} NaN/inf value(s) marked valid; expected finite values (or mask them out)"
            )
        return data, valid

    def _resolve(self, ndim: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The mean's and the spread's pooled axes for data of ``ndim`` dimensions, as sorted non-negative ints."""
        mean_axes, scale_axes = (_normalized(axes, ndim, self.name) for axes in (self.axis, self.scale_axis))
        if not set(mean_axes) <= set(scale_axes):
            raise ConfigError(
                f"Standardizer ({self.name}): scale_axis {scale_axes} must pool every axis of axis {mean_axes}"
            )
        return mean_axes, scale_axes

    def _count_problem(self, count: np.ndarray) -> str | None:
        needed = max(2, self.ddof + 1)
        fewest = int(count.min())
        return (
            f"{self.name}: {fewest} valid value(s) to measure a spread from; need at least {needed}"
            if fewest < needed
            else None
        )

    def _require_count(self, count: np.ndarray) -> None:
        problem = self._count_problem(count)
        if problem:
            raise DataError(problem)

    def _spread_problem(self, scale: np.ndarray) -> str | None:
        if self.floor is None and not (scale > 0).all():
            return f"{self.name}: the valid values do not vary (zero spread); cannot standardize"
        return None

    def _store(
        self,
        mean: np.ndarray,
        scale: np.ndarray,
        count: np.ndarray,
        mean_axes: tuple[int, ...],
        scale_axes: tuple[int, ...],
    ) -> None:
        if self.floor is not None:
            scale = np.maximum(scale, self.floor)
        self._mean = _drop_leading(np.asarray(mean, np.float64), mean_axes)
        self._scale = _drop_leading(np.asarray(scale, np.float64), scale_axes)
        self.n_samples_seen_ = _drop_leading(np.asarray(count, np.int64), mean_axes)

    def _fitted(self) -> tuple[np.ndarray, np.ndarray]:
        if self._mean is None or self._scale is None:
            raise ConfigError(f"the standardizer of {self.name} is not fitted: call fit(x, mask) first")
        if self._unusable:
            raise DataError(self._unusable)
        return self._mean, self._scale


def _as_axes(axes: Axes) -> tuple[int, ...] | None:
    if axes is None:
        return None
    if isinstance(axes, int):
        return (axes,)
    if not all(isinstance(a, int) for a in axes):
        raise ConfigError(f"Standardizer: axes must be ints, got {axes!r}")
    return tuple(axes)


def _axes_json(axes: tuple[int, ...] | None) -> list[int] | None:
    return None if axes is None else list(axes)


def _normalized(axes: tuple[int, ...] | None, ndim: int, name: str) -> tuple[int, ...]:
    if axes is None:
        return tuple(range(ndim))
    if any(not -ndim <= a < ndim for a in axes):
        raise ShapeError(f"Standardizer ({name}): axes {axes} do not exist in data with {ndim} dimension(s)")
    return tuple(sorted({a % ndim for a in axes}))


def _drop_leading(stat: np.ndarray, pooled: tuple[int, ...]) -> np.ndarray:
    """``stat`` without its leading pooled (size-1) axes: ``[1, H, W]`` pooled over 0 -> ``[H, W]``."""
    lead = 0
    while lead in pooled:
        lead += 1
    return stat.reshape(stat.shape[lead:])


def _numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _floating(data: np.ndarray) -> np.ndarray:
    return data if np.issubdtype(data.dtype, np.floating) else data.astype(np.float64)


def _tensor(stat: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(stat, dtype=like.dtype, device=like.device)
