"""Few-shot regression tasks over groups of catalogue rows: sky cells or magnitude bins.

A task is one group (a ra/dec cell, or a bin of r magnitude); its support is
K labelled objects drawn from the group and its query the others. Groups are
split into meta-train / meta-val / meta-test, at random (:func:`split_groups`)
or in order (:func:`split_ordered_groups`: bright bins train, faint bins
test), so no object of a test group is ever seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from metamap.errors import ConfigError, DataError
from metamap.tasks.episode import Episode
from metamap.tasks.family import SPLITS, check_split

Groups = dict[str, list[np.ndarray]]


def sky_cells(ra: np.ndarray, dec: np.ndarray, size_deg: float) -> np.ndarray:
    """Integer cell id ``[N]`` of a ``size_deg`` x ``size_deg`` grid in (ra, dec), degrees."""
    if not size_deg > 0:
        raise ConfigError(f"sky cell size must be > 0 degrees, got {size_deg}")
    n_dec = int(np.ceil(180.0 / size_deg)) + 1
    return (np.floor(np.mod(ra, 360.0) / size_deg) * n_dec + np.floor((dec + 90.0) / size_deg)).astype(np.int64)


def magnitude_bins(mag: np.ndarray, valid: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin id ``[N]`` of ``n_bins`` equally populated bins of a magnitude ``mag [N]`` (-1 where ``valid``
    is False)."""
    if n_bins < 2:
        raise ConfigError(f"magnitude_bins: n_bins must be >= 2, got {n_bins}")
    edges = np.quantile(mag[valid], np.linspace(0, 1, n_bins + 1)[1:-1])
    return np.where(valid, np.searchsorted(edges, np.where(valid, mag, 0.0)), -1).astype(np.int64)


def split_groups(ids: np.ndarray, min_size: int, fractions: tuple[float, float, float], seed: int) -> Groups:
    """Rows of each group with >= ``min_size`` members, shuffled into train/val/test groups by ``fractions``.

    Rows of smaller groups (and rows with id -1) are returned under ``"rest"``.
    """
    values, counts = np.unique(ids[ids >= 0], return_counts=True)
    eligible = values[counts >= min_size]
    _need_three(eligible.size, min_size)
    order = np.random.default_rng(seed).permutation(eligible)
    n_val, n_test = _split_sizes(order.size, fractions)
    named = {"val": order[:n_val], "test": order[n_val : n_val + n_test], "train": order[n_val + n_test :]}
    groups: Groups = {name: [np.flatnonzero(ids == g) for g in sorted(members)] for name, members in named.items()}
    groups["rest"] = [np.flatnonzero(~np.isin(ids, eligible))]
    return groups


def split_ordered_groups(ids: np.ndarray, min_size: int, fractions: tuple[float, float, float]) -> Groups:
    """Groups split by id, not at random: the lowest ids meta-train, the next meta-val, the highest meta-test
    (for magnitude bins: bright galaxies train, the faintest are the test tasks).

    Every group must have >= ``min_size`` members (DataError otherwise: a small faint group left out of the
    tasks would otherwise have to join the training rows). Rows with id -1 (no magnitude: they may be faint)
    belong to no split; ``"rest"`` is empty.
    """
    values, counts = np.unique(ids[ids >= 0], return_counts=True)
    small = counts < min_size
    if small.any():
        raise DataError(
            f"ordered split: every group must have >= {min_size} objects to be a task; {int(small.sum())} of "
            f"{counts.size} have fewer (smallest {int(counts.min())}): use fewer bins (--bins) or a smaller "
            "minimum (--min-cell)"
        )
    _need_three(values.size, min_size)
    n_val, n_test = _split_sizes(values.size, fractions)
    n_train = values.size - n_val - n_test
    named = {"train": values[:n_train], "val": values[n_train : n_train + n_val], "test": values[n_train + n_val :]}
    groups: Groups = {name: [np.flatnonzero(ids == g) for g in members] for name, members in named.items()}
    groups["rest"] = [np.zeros(0, dtype=np.int64)]
    return groups


def _need_three(n_groups: int, min_size: int) -> None:
    if n_groups < 3:
        raise DataError(
            f"only {n_groups} group(s) have >= {min_size} objects; need at least 3 "
            "(one each for meta-train, meta-val and meta-test): use larger cells or fewer shots"
        )


def _split_sizes(n_groups: int, fractions: tuple[float, float, float]) -> tuple[int, int]:
    """Numbers of val and test groups (at least one each) of ``n_groups`` by the train/val/test ``fractions``."""
    return max(1, int(round(fractions[1] * n_groups))), max(1, int(round(fractions[2] * n_groups)))


@dataclass(frozen=True, eq=False)
class GroupedRegression:
    """Regression tasks, one per group of rows of ``x [N, F]``, ``y [N, D]``.

    ``groups`` maps split names to lists of row-index arrays. Each task draws
    ``k_shot`` support rows of a group at random; the query holds the next
    ``n_query`` rows, or, with ``n_query=None``, all the group's other rows.
    Queries shorter than the episode's query length are padded and masked
    (``query_mask`` False), so smaller groups can share a batch.
    """

    x: torch.Tensor = field(repr=False)
    y: torch.Tensor = field(repr=False)
    groups: Groups = field(repr=False)
    k_shot: int = 20
    n_query: int | None = 30
    split_name: str = "train"

    def __post_init__(self) -> None:
        check_split(self.split_name)
        for name in SPLITS:
            small = [len(g) for g in self.groups.get(name, []) if len(g) <= self.k_shot]
            if small:
                raise ConfigError(
                    f"GroupedRegression: {len(small)} {name} group(s) have <= k_shot={self.k_shot} "
                    f"objects (sizes {small}); every task needs a query"
                )

    def split(self, name: str) -> GroupedRegression:
        return replace(self, split_name=check_split(name))

    @property
    def members(self) -> list[np.ndarray]:
        members = self.groups.get(self.split_name, [])
        if not members:
            raise DataError(f"GroupedRegression: split {self.split_name!r} has no group")
        return members

    def sample(self, n_tasks: int, generator: torch.Generator) -> Episode:
        """Draw ``n_tasks`` tasks; ``meta["group"] [T]`` indexes ``self.members``."""
        members = self.members
        picks = torch.randint(len(members), (n_tasks,), generator=generator)
        n_query = self.n_query or max(len(members[int(p)]) for p in picks) - self.k_shot
        support, query, mask = [], [], torch.zeros(n_tasks, n_query, dtype=torch.bool)
        for t, pick in enumerate(picks.tolist()):
            rows = torch.as_tensor(members[pick])[torch.randperm(len(members[pick]), generator=generator)]
            support.append(rows[: self.k_shot])
            chosen = rows[self.k_shot : self.k_shot + n_query]
            mask[t, : chosen.numel()] = True
            query.append(torch.cat([chosen, chosen.new_zeros(n_query - chosen.numel())]))
        support, query = torch.stack(support), torch.stack(query)
        return Episode(
            self.x[support],
            self.y[support],
            self.x[query],
            self.y[query],
            query_mask=mask,
            meta={"group": picks, "query_rows": query, "support_rows": support},
        )
