"""N-way K-shot classification over a labelled pool (Vinyals et al. 2016 episodes).

A pool holds the same number of examples for every base class:
``pool [n_base, n_per_class, *x_shape]``. Each task draws ``n_way`` distinct
classes of its split and, per class, ``k_shot + n_query`` distinct examples;
the first ``k_shot`` are support, the rest query. Labels ``0..n_way-1`` name
the task's classes in a random order, drawn afresh for every task.

With ``rotations=True`` class ids index four times as many classes: class
``c`` is base class ``c // 4`` turned by ``(c % 4) * 90`` degrees
(``torch.rot90`` on the last two dims, counter-clockwise), computed when an
episode is drawn, never stored. This is the Omniglot augmentation of Santoro
et al. 2016 and Vinyals et al. 2016.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import torch

from metamap.errors import ConfigError, ShapeError, describe
from metamap.tasks.episode import Episode
from metamap.tasks.family import check_split

ROTATIONS = 4


@dataclass(frozen=True, eq=False)
class NWayKShot:
    """Family of ``n_way``-way ``k_shot``-shot tasks drawn from the classes of one split.

    ``pool [n_base, n_per_class, *x_shape]`` is float; keep it on the CPU and
    move episodes with ``Episode.to``. ``class_splits`` maps split names to
    1-D integer tensors of class ids (``0..n_classes-1``, where ``n_classes``
    is ``n_base``, or ``4 * n_base`` with rotations); splits must not share a
    base class, so no example of one split appears in another. ``None`` puts
    every class in split ``split_name`` and leaves the other splits empty.

    Episodes hold ``x_support [T, n_way * k_shot, *x_shape]`` and
    ``x_query [T, n_way * n_query, *x_shape]``, grouped by label (all
    examples of label 0 first), with int64 labels ``y_support``/``y_query``;
    ``meta["classes"]`` ``[T, n_way]`` gives the class id behind each label.
    """

    pool: torch.Tensor = field(repr=False)
    n_way: int = 5
    k_shot: int = 1
    n_query: int = 15
    split_name: str = "train"
    class_splits: Mapping[str, torch.Tensor] | None = field(default=None, repr=False)
    rotations: bool = False

    def __post_init__(self) -> None:
        check_split(self.split_name)
        _check_pool(self.pool, self.rotations)
        object.__setattr__(self, "pool", self.pool.contiguous())
        splits = _normalise_splits(self.class_splits, self.split_name, self.n_classes, self.rotations)
        object.__setattr__(self, "class_splits", splits)
        self._check_counts()

    @property
    def n_classes(self) -> int:
        """Number of class ids the pool provides (``4 * n_base`` with rotations)."""
        return int(self.pool.shape[0]) * (ROTATIONS if self.rotations else 1)

    @property
    def n_per_class(self) -> int:
        """Examples per base class in the pool."""
        return int(self.pool.shape[1])

    @property
    def classes(self) -> torch.Tensor:
        """Class ids ``int64 [C]`` of this family's split."""
        assert self.class_splits is not None  # __post_init__ replaces None by the normalised splits
        return self.class_splits[self.split_name]

    def split(self, name: str) -> NWayKShot:
        return replace(self, split_name=check_split(name))

    def sample(self, n_tasks: int, generator: torch.Generator) -> Episode:
        """Draw ``n_tasks`` tasks using ``generator`` (a CPU generator) as the only randomness."""
        if n_tasks < 1:
            raise ConfigError(f"NWayKShot.sample: n_tasks must be >= 1, got {n_tasks}")
        classes = self.classes
        picks = torch.rand(n_tasks, classes.numel(), generator=generator).topk(self.n_way, dim=1).indices
        task_classes = classes[picks]
        order = torch.rand(n_tasks, self.n_way, self.n_per_class, generator=generator).argsort(dim=2)
        k, q = self.k_shot, self.n_query
        labels = torch.arange(self.n_way)
        return Episode(
            x_support=self._gather(task_classes, order[..., :k]).flatten(1, 2),
            y_support=labels.repeat_interleave(k).repeat(n_tasks, 1),
            x_query=self._gather(task_classes, order[..., k : k + q]).flatten(1, 2),
            y_query=labels.repeat_interleave(q).repeat(n_tasks, 1),
            meta={"n_way": self.n_way, "classes": task_classes},
        )

    def _gather(self, task_classes: torch.Tensor, examples: torch.Tensor) -> torch.Tensor:
        """Examples ``[T, n_way, m, *x_shape]`` of classes ``[T, n_way]`` at indices ``[T, n_way, m]``.

        One ``index_select`` over the pool seen as ``[n_base * n_per_class, *x_shape]``
        (a row copy: faster than advanced indexing with two index tensors).
        """
        base = task_classes // ROTATIONS if self.rotations else task_classes
        rows = (base[:, :, None] * self.n_per_class + examples).flatten().to(self.pool.device)
        x = self.pool.flatten(0, 1).index_select(0, rows).view(*examples.shape, *self.pool.shape[2:])
        if self.rotations:
            _rotate_(x, (task_classes % ROTATIONS).to(self.pool.device))
        return x

    def _check_counts(self) -> None:
        if self.n_way < 2:
            raise ConfigError(f"NWayKShot: n_way must be >= 2, got {self.n_way}")
        if self.k_shot < 1 or self.n_query < 1:
            raise ConfigError(
                f"NWayKShot: k_shot and n_query must be >= 1, got k_shot={self.k_shot}, n_query={self.n_query}"
            )
        n_split = self.classes.numel()
        if self.n_way > n_split:
            raise ConfigError(
                f"NWayKShot: n_way={self.n_way} exceeds the {n_split} classes of split {self.split_name!r}"
            )
        if self.k_shot + self.n_query > self.n_per_class:
            raise ConfigError(
                f"NWayKShot: k_shot + n_query = {self.k_shot} + {self.n_query} = {self.k_shot + self.n_query} "
                f"exceeds the {self.n_per_class} examples per class of the pool"
            )


def _rotate_(x: torch.Tensor, turns: torch.Tensor) -> None:
    """Turn, in place, the examples ``x[t, n]`` (``x [T, N, m, ..., H, W]``) by ``turns[t, n]`` quarter turns."""
    for k in range(1, ROTATIONS):
        chosen = turns == k
        if bool(chosen.any()):
            x[chosen] = torch.rot90(x[chosen], k, dims=(-2, -1))


def _check_pool(pool: torch.Tensor, rotations: bool) -> None:
    if not isinstance(pool, torch.Tensor):
        raise ShapeError(f"NWayKShot: pool must be a torch.Tensor, got {type(pool).__name__}")
    if pool.dim() < 3 or not torch.is_floating_point(pool):
        raise ShapeError(
            f"NWayKShot: pool must be float [classes, examples_per_class, *x_shape] with x_shape "
            f"non-empty, got {describe(pool)}"
        )
    if rotations and (pool.dim() < 4 or pool.shape[-1] != pool.shape[-2]):
        raise ShapeError(
            f"NWayKShot: rotations need square images [classes, examples_per_class, ..., H, W] "
            f"with H == W, got {describe(pool)}"
        )


def _normalise_splits(
    class_splits: Mapping[str, torch.Tensor] | None, split_name: str, n_classes: int, rotations: bool
) -> dict[str, torch.Tensor]:
    """Validated ``{split: int64 [C]}``; every class in ``split_name`` when ``class_splits`` is None."""
    if class_splits is None:
        return {split_name: torch.arange(n_classes)}
    if not isinstance(class_splits, Mapping):
        raise ConfigError(
            f"NWayKShot: class_splits must map split names to class-id tensors, got {type(class_splits).__name__}"
        )
    splits = {check_split(name): _class_ids(name, ids, n_classes) for name, ids in class_splits.items()}
    if split_name not in splits:
        raise ConfigError(f"NWayKShot: split {split_name!r} has no classes; class_splits names {sorted(splits)}")
    _check_disjoint(splits, rotations)
    return splits


def _class_ids(name: str, ids: torch.Tensor, n_classes: int) -> torch.Tensor:
    ids = torch.as_tensor(ids)
    if ids.dim() != 1 or ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
        raise ShapeError(f"NWayKShot: class_splits[{name!r}] must be 1-D integer class ids, got {describe(ids)}")
    ids = ids.to(torch.int64).cpu()
    if ids.numel() == 0:
        raise ConfigError(f"NWayKShot: class_splits[{name!r}] is empty")
    if int(ids.min()) < 0 or int(ids.max()) >= n_classes:
        raise ConfigError(
            f"NWayKShot: class_splits[{name!r}] holds ids in [{int(ids.min())}, {int(ids.max())}], "
            f"expected 0..{n_classes - 1} ({n_classes} classes in the pool)"
        )
    if torch.unique(ids).numel() != ids.numel():
        raise ConfigError(f"NWayKShot: class_splits[{name!r}] repeats class ids")
    return ids


def _check_disjoint(splits: dict[str, torch.Tensor], rotations: bool) -> None:
    """Splits may not share a base class: with rotations, all four turns of one base belong to one split."""
    base = {name: (ids // ROTATIONS if rotations else ids) for name, ids in splits.items()}
    names = list(base)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            shared = torch.unique(base[first][torch.isin(base[first], base[second])])
            if shared.numel():
                raise ConfigError(
                    f"NWayKShot: class_splits {first!r} and {second!r} share {shared.numel()} base class(es), "
                    f"e.g. {int(shared[0])}; splits must be disjoint"
                    + (" (with rotations, base class = class id // 4)" if rotations else "")
                )
