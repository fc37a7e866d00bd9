"""Episode: a batch of T few-shot tasks, each with a support and a query set.

Shapes (T tasks, S support and Q query examples per task):

- ``x_support``: ``[T, S, *x_shape]`` float
- ``y_support``: ``[T, S, *y_shape]`` float (regression) or ``[T, S]`` int64 class
  indices in ``0..n_way-1`` (classification)
- ``x_query``:   ``[T, Q, *x_shape]``
- ``y_query``:   ``[T, Q, *y_shape]`` or ``[T, Q]``
- ``support_mask`` / ``query_mask``: optional bool ``[T, S]`` / ``[T, Q]``;
  ``False`` marks an example that must not count (missing value, padding).
  Regression episodes may instead mask each target value: bool of the shape
  of ``y_support`` / ``y_query`` (e.g. ``[T, S, horizon]``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from metamap.errors import DataError, ShapeError, describe

_TENSOR_FIELDS = ("x_support", "y_support", "x_query", "y_query", "support_mask", "query_mask")


@dataclass(frozen=True)
class Episode:
    """Support/query tensors batched over tasks, with optional validity masks.

    An episode is validated once, when it is built (:meth:`validate`: shapes,
    dtypes, masks, finite values, labels). What is derived from a valid
    episode (:meth:`to`, :meth:`select`, :meth:`chunks`, :meth:`shard`) is
    valid by construction and is not checked again, so that training and
    evaluation loops make no host-device round trips for validation.

    ``meta`` holds per-batch task metadata (e.g. ``{"n_way": 5}`` or the
    sinusoid amplitudes ``{"amplitude": Tensor[T]}``); tensors in ``meta``
    whose first dimension is T are sliced with the episode.
    """

    x_support: torch.Tensor
    y_support: torch.Tensor
    x_query: torch.Tensor
    y_query: torch.Tensor
    support_mask: torch.Tensor | None = None
    query_mask: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def n_tasks(self) -> int:
        return int(self.x_support.shape[0])

    @property
    def is_classification(self) -> bool:
        return not torch.is_floating_point(self.y_support)

    def validate(self) -> None:
        """Check shapes, dtypes and finiteness; raise ShapeError/DataError naming the field."""
        for name in ("x_support", "y_support", "x_query", "y_query"):
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor):
                raise ShapeError(f"Episode.{name}: expected a torch.Tensor, got {type(value).__name__}")
            if value.dim() < 2:
                raise ShapeError(f"Episode.{name}: expected at least [tasks, examples], got {describe(value)}")
        t, s = self.x_support.shape[:2]
        q = self.x_query.shape[1]
        expected = {"y_support": (t, s), "x_query": (t, q), "y_query": (t, q)}
        for name, lead in expected.items():
            got = tuple(getattr(self, name).shape[:2])
            if got != lead:
                raise ShapeError(
                    f"Episode.{name}: expected leading dims {list(lead)} (tasks, examples) "
                    f"to match x_support {describe(self.x_support)}, got {describe(getattr(self, name))}"
                )
        if self.x_support.shape[2:] != self.x_query.shape[2:]:
            raise ShapeError(
                f"Episode: support and query inputs differ in feature shape: "
                f"{describe(self.x_support)} vs {describe(self.x_query)}"
            )
        if self.y_support.dtype != self.y_query.dtype:
            raise ShapeError(f"Episode: y_support is {self.y_support.dtype} but y_query is {self.y_query.dtype}")
        for name, target in (("support_mask", self.y_support), ("query_mask", self.y_query)):
            mask = getattr(self, name)
            if mask is None:
                continue
            shapes = [tuple(target.shape[:2])] + ([tuple(target.shape)] if torch.is_floating_point(target) else [])
            if mask.dtype != torch.bool or tuple(mask.shape) not in shapes:
                allowed = " or ".join(f"bool{list(shape)}" for shape in shapes)
                raise ShapeError(f"Episode.{name}: expected {allowed}, got {describe(mask)}")
        if self._element_masks() and len({m.dim() for m in self._element_masks()}) > 1:
            raise ShapeError("Episode: support_mask and query_mask must both be per example or both per value")
        for name in ("x_support", "y_support", "x_query", "y_query"):
            value = getattr(self, name)
            # A finite sum proves every value finite; only then is the full check skipped.
            if torch.is_floating_point(value) and not (torch.isfinite(value.sum()) or torch.isfinite(value).all()):
                bad = int((~torch.isfinite(value)).sum())
                raise DataError(
                    f"Episode.{name} holds {bad} NaN/inf value(s); expected finite numbers. "
                    "Mark missing values with support_mask/query_mask and fill them with 0."
                )
        self._check_labels()

    def all_examples(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Support and query joined per task: ``x [T, S+Q, ...]``, ``y``, ``mask [T, S+Q]`` or None."""
        x = torch.cat([self.x_support, self.x_query], dim=1)
        y = torch.cat([self.y_support, self.y_query], dim=1)
        if self.support_mask is None and self.query_mask is None:
            return x, y, None
        per_value = any(m.dim() > 2 for m in self._element_masks())
        # A missing mask is made where the data are, per value if the other one is.
        support, query = (
            mask
            if mask is not None
            else torch.ones((target.shape if per_value else target.shape[:2]), dtype=torch.bool, device=target.device)
            for mask, target in ((self.support_mask, self.y_support), (self.query_mask, self.y_query))
        )
        return x, y, torch.cat([support, query], dim=1)

    def _element_masks(self) -> list[torch.Tensor]:
        return [m for m in (self.support_mask, self.query_mask) if m is not None]

    def _check_labels(self) -> None:
        if self.is_classification and self.y_support.numel() and self.y_query.numel():
            low = min(int(self.y_support.min()), int(self.y_query.min()))
            if low < 0 or int(self.y_query.max()) > int(self.y_support.max()):
                raise DataError(
                    f"Episode labels: expected class indices in 0..{int(self.y_support.max())} (the support's classes), "
                    f"got support {int(self.y_support.min())}..{int(self.y_support.max())} and query "
                    f"{int(self.y_query.min())}..{int(self.y_query.max())}"
                )

    def to(self, device: torch.device | str) -> Episode:
        """The same episode with every tensor moved to ``device``."""
        moved: dict[str, Any] = {n: (v.to(device) if v is not None else None) for n, v in self._tensors().items()}
        return self._derived(moved)

    def select(self, tasks: slice | torch.Tensor) -> Episode:
        """The sub-episode of the chosen tasks (a slice or an index tensor)."""
        picked: dict[str, Any] = {n: (v[tasks] if v is not None else None) for n, v in self._tensors().items()}
        n = self.n_tasks
        meta = {
            k: (v[tasks] if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == n else v)
            for k, v in self.meta.items()
        }
        return self._derived({**picked, "meta": meta})

    def chunks(self, chunk_size: int | None) -> list[Episode]:
        """Split into consecutive sub-episodes of at most ``chunk_size`` tasks."""
        if chunk_size is None or chunk_size >= self.n_tasks:
            return [self]
        if chunk_size < 1:
            raise ShapeError(f"chunk_size must be >= 1, got {chunk_size}")
        return [self.select(slice(i, i + chunk_size)) for i in range(0, self.n_tasks, chunk_size)]

    def shard(self, rank: int, world_size: int) -> Episode:
        """The contiguous block of tasks that process ``rank`` of ``world_size`` handles."""
        if world_size < 1 or not 0 <= rank < world_size:
            raise ShapeError(f"shard: expected 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if self.n_tasks % world_size:
            raise ShapeError(
                f"Episode with {self.n_tasks} tasks cannot be split evenly over {world_size} processes; "
                "choose a meta-batch size divisible by the number of processes"
            )
        per = self.n_tasks // world_size
        return self.select(slice(rank * per, (rank + 1) * per))

    def _derived(self, changes: dict[str, Any]) -> Episode:
        """This episode with ``changes`` to its fields, not validated again (a slice or a move of a valid one)."""
        derived = copy.copy(self)
        for name, value in changes.items():
            object.__setattr__(derived, name, value)
        return derived

    def _tensors(self) -> dict[str, torch.Tensor | None]:
        return {n: getattr(self, n) for n in _TENSOR_FIELDS}


def concat_episodes(parts: Sequence[Episode], extra_meta: dict[str, Any] | None = None) -> Episode:
    """Episodes with the same example counts joined along the task axis: ``[T1 + T2 + ..., ...]``.

    Every tensor field of :class:`Episode` is joined (a mask that the first part lacks stays None), and so is
    each ``meta`` tensor with a task axis; ``extra_meta`` is added to the result's ``meta``.
    """
    if not parts:
        raise ShapeError("concat_episodes: expected at least one episode")
    joined: dict[str, Any] = {
        name: None if getattr(parts[0], name) is None else torch.cat([getattr(p, name) for p in parts])
        for name in _TENSOR_FIELDS
    }
    meta = {
        key: torch.cat([p.meta[key] for p in parts])
        for key, value in parts[0].meta.items()
        if isinstance(value, torch.Tensor) and value.dim() > 0
    }
    return Episode(**joined, meta={**meta, **(extra_meta or {})})
