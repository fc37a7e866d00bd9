"""Few-shot tasks over the pattern classes of sensor-days, and the by-sensor train/val split they draw from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from metamap.errors import ConfigError, DataError
from metamap.tasks.episode import Episode
from metamap.tasks.family import check_split
from metamap.traffic.patterns.labels import PATTERNS, named_counts

VAL_FRACTION = 0.2


@dataclass(frozen=True, eq=False)
class PatternEpisodes:
    """N-way K-shot tasks over the pattern classes of sensor-days (a TaskFamily).

    ``x [D, F]`` float sensor-day features, ``labels int64 [D]`` indices into
    ``names`` (the patterns; default the speed rule's), ``splits`` maps split names to ``int64`` sensor-day indices
    (disjoint, e.g. by sensor). A split's classes are the patterns with at
    least ``k_shot + n_query`` days in it (:attr:`classes`); each task draws
    ``n_way`` of them (``None``: all) and ``k_shot + n_query`` distinct days of
    each. Episodes hold ``x_support [T, n_way * k_shot, F]`` and
    ``x_query [T, n_way * n_query, F]`` grouped by label (all of label 0
    first); ``meta["classes"] [T, n_way]`` is the pattern behind each label.
    """

    x: torch.Tensor = field(repr=False)
    labels: torch.Tensor = field(repr=False)
    splits: Mapping[str, torch.Tensor] = field(repr=False)
    n_way: int | None = None
    k_shot: int = 5
    n_query: int = 5
    split_name: str = "train"
    names: tuple[str, ...] = PATTERNS
    classes: tuple[int, ...] = field(init=False, default=())
    _pools: list[torch.Tensor] = field(init=False, repr=False, default_factory=list)

    def __post_init__(self) -> None:
        check_split(self.split_name)
        if self.split_name not in self.splits:
            raise ConfigError(f"PatternEpisodes: no split {self.split_name!r}; it has {sorted(self.splits)}")
        if self.k_shot < 1 or self.n_query < 1:
            raise ConfigError(f"PatternEpisodes: expected k_shot, n_query >= 1, got {self.k_shot}, {self.n_query}")
        members = self.splits[self.split_name]
        counts = torch.bincount(self.labels[members], minlength=len(self.names))
        need = self.k_shot + self.n_query
        classes = tuple(c for c in range(len(self.names)) if int(counts[c]) >= need)
        n_way = max(2, self.n_way or 2)
        if len(classes) < n_way:
            raise DataError(
                f"PatternEpisodes split {self.split_name!r}: needs at least {n_way} patterns with "
                f"k_shot + n_query = {need} sensor-days each; got {named_counts(counts, self.names)}"
            )
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "_pools", [members[self.labels[members] == c] for c in classes])

    def split(self, name: str) -> PatternEpisodes:
        return replace(self, split_name=check_split(name))

    def sample(self, n_tasks: int, generator: torch.Generator) -> Episode:
        """Draw ``n_tasks`` tasks with ``generator`` as the only randomness."""
        if n_tasks < 1:
            raise ConfigError(f"PatternEpisodes.sample: n_tasks must be >= 1, got {n_tasks}")
        n_way = self.n_way or len(self.classes)
        k, m = self.k_shot, self.k_shot + self.n_query
        # [T, C, m]: for every class, m distinct days per task
        picks = torch.stack(
            [
                pool[torch.rand(n_tasks, pool.numel(), generator=generator).topk(m, dim=1).indices]
                for pool in self._pools
            ],
            dim=1,
        )
        chosen = torch.rand(n_tasks, len(self.classes), generator=generator).topk(n_way, dim=1).indices
        days = picks.gather(1, chosen[..., None].expand(-1, -1, m))  # [T, n_way, m]
        x = self.x[days]
        labels = torch.arange(n_way)
        return Episode(
            x_support=x[:, :, :k].flatten(1, 2),
            y_support=labels.repeat_interleave(k).repeat(n_tasks, 1),
            x_query=x[:, :, k:].flatten(1, 2),
            y_query=labels.repeat_interleave(self.n_query).repeat(n_tasks, 1),
            meta={"n_way": n_way, "classes": torch.tensor(self.classes)[chosen]},
        )


def sensor_splits(sensor: np.ndarray, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Sensor-day indices of a random 80% (train) and 20% (val) of the sensors."""
    ids = np.unique(sensor)
    if ids.size < 2:
        raise DataError(
            f"the source needs at least 2 sensors with whole days to split into train and val; got {ids.size}"
        )
    order = ids[torch.randperm(ids.size, generator=generator).numpy()]
    n_val = max(1, round(VAL_FRACTION * ids.size))
    val = np.isin(sensor, order[:n_val])
    return {"train": torch.from_numpy(np.flatnonzero(~val)), "val": torch.from_numpy(np.flatnonzero(val))}
