"""Sensors as tasks: the meta-training family of one or more source cities.

A task is one sensor: its support set is a contiguous block of forecast
windows (e.g. one day, as a new sensor would offer), its query set windows
from the rest of the training period. At test time the same shape holds:
support = the target sensor's own support period, query = the test period.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from metamap.errors import ConfigError, DataError
from metamap.tasks.episode import Episode
from metamap.tasks.family import check_split
from metamap.traffic.features import SeriesFeatures


class SensorTasks:
    """Tasks drawn from the sensors of one or more cities over a training period.

    Args:
        sources: one :class:`SeriesFeatures` per source city (same feature width).
        nodes: per city, the sensors ``{"train": [...], "val": [...]}`` tasks may use.
        periods: ``(start, stop)`` time steps of the training period, per city.
        support_steps: length of a task's support block in steps (288 = 1 day at 5 min).
        n_support, n_query: windows per task drawn from the block / from the rest.
        split_name: which sensors this family draws ("train" or "val").
    """

    def __init__(
        self,
        sources: Sequence[SeriesFeatures],
        nodes: Sequence[dict[str, Sequence[int]]],
        periods: Sequence[tuple[int, int]],
        *,
        support_steps: int = 288,
        n_support: int = 48,
        n_query: int = 48,
        split_name: str = "train",
    ) -> None:
        if len({(s.n_features, s.spec) for s in sources}) != 1:
            raise ConfigError("source cities must give the same windows (same graph hops, lengths and base)")
        if not len(sources) == len(nodes) == len(periods):
            raise ConfigError("SensorTasks: one node split and one period per source city")
        self.sources = list(sources)
        self.nodes = [{k: torch.as_tensor(list(v), dtype=torch.long) for k, v in n.items()} for n in nodes]
        self.periods = list(periods)
        self.support_steps = support_steps
        self.n_support = n_support
        self.n_query = n_query
        self.split_name = check_split(split_name)
        for city, (start, stop) in zip(self.sources, self.periods):
            if len(city.origins(0, support_steps)) == 0:
                raise DataError(
                    f"{city.data.name}: a support block of {support_steps} steps holds no window of "
                    f"{city.history} steps of history and {city.horizon} ahead; give a longer --support or a "
                    "shorter --history / --horizons"
                )
            if stop - start < support_steps + 2 * (city.history + city.horizon):
                raise DataError(
                    f"{city.data.name}: the training period has {stop - start} steps; a task needs a "
                    f"support block of {support_steps} steps and query windows outside it"
                )
        if all(len(n.get(split_name, ())) == 0 for n in self.nodes):
            raise DataError(f"no source sensors in split {split_name!r}")

    @property
    def n_features(self) -> int:
        return self.sources[0].n_features

    def split(self, name: str) -> SensorTasks:
        if check_split(name) == "test":
            raise ConfigError("SensorTasks has train and val sensors only; targets are evaluated separately")
        return SensorTasks(
            self.sources,
            [{k: v.tolist() for k, v in n.items()} for n in self.nodes],
            self.periods,
            support_steps=self.support_steps,
            n_support=self.n_support,
            n_query=self.n_query,
            split_name=name,
        )

    def sample(self, n_tasks: int, generator: torch.Generator) -> Episode:
        """``n_tasks`` sensors with support ``[T, n_support, F]`` and query ``[T, n_query, F]`` windows."""
        weights = torch.tensor([float(len(n[self.split_name])) for n in self.nodes])
        cities = torch.multinomial(weights, n_tasks, replacement=True, generator=generator)
        parts = [self._sample_city(int(c), int((cities == c).sum()), generator) for c in cities.unique()]
        x_s, y_s, m_s, x_q, y_q, m_q = (torch.cat(p, dim=0) for p in zip(*parts))
        return Episode(x_s, y_s, x_q, y_q, support_mask=m_s, query_mask=m_q)

    def _sample_city(self, city: int, n: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        source, (start, stop) = self.sources[city], self.periods[city]
        pool = self.nodes[city][self.split_name]
        nodes = pool[torch.randint(len(pool), (n,), generator=generator)]
        block_start = start + torch.randint(stop - start - self.support_steps + 1, (n,), generator=generator)
        support_origins, query_origins = [], []
        for b in block_start.tolist():
            inside = source.origins(b, b + self.support_steps)
            outside = source.origins(start, stop)
            outside = outside[(outside + source.horizon < b) | (outside - source.history + 1 >= b + self.support_steps)]
            support_origins.append(_pick(inside, self.n_support, generator))
            query_origins.append(_pick(outside, self.n_query, generator))
        support = source.windows(nodes, torch.stack(support_origins))
        query = source.windows(nodes, torch.stack(query_origins))
        return (*support, *query)


def _pick(origins: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """``k`` distinct origins at random (with repetition only if fewer exist)."""
    if len(origins) >= k:
        return origins[torch.randperm(len(origins), generator=generator)[:k]]
    return origins[torch.randint(len(origins), (k,), generator=generator)]
