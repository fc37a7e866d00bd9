"""Patterns found in the data: k-means clusters of normalised sensor-day profiles, k chosen by silhouette.

The speed rule of :mod:`.labels` only means something for speeds (a drop below
70% of free flow is congestion). For counts and flows, whose profiles rise by
day and fall at night, the patterns come from the source city's own days:
k-means on the profiles (each divided by its day's 95th percentile), for every
k of :data:`K_GRID`, keeping the k of the best mean silhouette. The target's
days get the pattern of the nearest source centroid, so that a pattern means
the same shape in both cities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from metamap.errors import DataError, ShapeError, describe
from metamap.experiment.validation import Choice

K_GRID = tuple(range(2, 9))
SILHOUETTE_SAMPLE = 2000  # days the silhouette is measured on (it costs the square of this)
RESTARTS = 4  # k-means runs from different seeds; the one of least inertia is kept
ITERATIONS = 100


@dataclass(frozen=True)
class ProfileClusters:
    """k-means centroids of source profiles as a :class:`~metamap.traffic.patterns.labels.Labelling`.

    Attributes:
        centroids: ``float64 [k, B]`` mean profile of each pattern, the most common first.
        choice: the silhouette of every k tried (score: minus the mean silhouette).
        shares: ``float64 [k]`` fraction of the fitted days in each pattern.
    """

    centroids: np.ndarray
    choice: Choice
    shares: np.ndarray
    profile_axis: str = "reading / the sensor-day's 95th percentile"
    threshold: float | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"cluster_{i + 1}" for i in range(len(self.centroids)))

    @classmethod
    def fit(cls, profiles: np.ndarray, seed: int = 0, k_grid: tuple[int, ...] = K_GRID) -> ProfileClusters:
        """Cluster finite ``profiles [D, B]`` for each k of ``k_grid``; keep the k of the best silhouette.

        Raises DataError when there are too few days for two clusters, ShapeError for non-finite input.
        """
        profiles = np.asarray(profiles, dtype=np.float64)
        if profiles.ndim != 2 or not np.isfinite(profiles).all():
            raise ShapeError(f"ProfileClusters.fit: expected finite profiles [days, bins], got {describe(profiles)}")
        ks = [k for k in k_grid if k < len(profiles)]
        if not ks:
            raise DataError(f"clustering sensor-days needs more than {min(k_grid)} days; got {len(profiles)}")
        rng = np.random.default_rng(seed)
        sample = rng.permutation(len(profiles))[:SILHOUETTE_SAMPLE]
        fits, tried = {}, []
        for k in ks:
            centroids, labels = _kmeans(profiles, k, rng)
            fits[k] = centroids, labels
            tried.append(({"k": k}, -mean_silhouette(profiles[sample], labels[sample])))
        settings, score = min(tried, key=lambda pair: pair[1])
        centroids, labels = fits[settings["k"]]
        sizes = np.bincount(labels, minlength=len(centroids))
        order = np.argsort(-sizes, kind="stable")
        return cls(
            centroids=centroids[order],
            choice=Choice(settings=settings, score=score, tried=tuple(tried)),
            shares=sizes[order] / sizes.sum(),
        )

    def label(self, profiles: np.ndarray) -> np.ndarray:
        """``int64 [D]``: the nearest centroid of each profile ``[D, B]``, over the bins it has (NaN bins skipped)."""
        profiles = np.asarray(profiles, dtype=np.float64)
        if profiles.ndim != 2 or profiles.shape[1] != self.centroids.shape[1]:
            raise ShapeError(
                f"ProfileClusters.label: expected profiles [days, {self.centroids.shape[1]}], got {describe(profiles)}"
            )
        observed = ~np.isnan(profiles)
        gaps = np.where(observed, profiles, 0.0)[:, None, :] - self.centroids[None]
        distance = (np.where(observed[:, None, :], gaps, 0.0) ** 2).sum(2) / np.maximum(observed.sum(1), 1)[:, None]
        return distance.argmin(1).astype(np.int64)

    def summary(self) -> dict[str, Any]:
        hours = np.arange(self.centroids.shape[1]) * 24.0 / self.centroids.shape[1]
        return {
            "kind": "clusters",
            "note": "weak: k-means clusters of the source's normalised sensor-day profiles, not ground truth",
            "k": self.choice.settings["k"],
            "silhouette_by_k": {str(s["k"]): -score for s, score in self.choice.tried},
            "k_at_largest_tried": self.choice.settings["k"] == max(self.choice.grid["k"]),  # 2 is the least k
            "patterns": {
                name: {
                    "share_of_source_days": float(share),
                    "peak_hour": float(hours[c.argmax()]),
                    "low_hour": float(hours[c.argmin()]),
                }
                for name, share, c in zip(self.names, self.shares, self.centroids)
            },
        }


def _kmeans(x: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means from k-means++ seeds, best of :data:`RESTARTS`: centroids ``[k, B]``, labels ``int64 [D]``."""
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for _ in range(RESTARTS):
        centroids = _plus_plus(x, k, rng)
        for _ in range(ITERATIONS):
            labels = _squared_distances(x, centroids).argmin(1)
            moved = np.stack([x[labels == c].mean(0) if (labels == c).any() else centroids[c] for c in range(k)])
            if np.allclose(moved, centroids):
                break
            centroids = moved
        labels = _squared_distances(x, centroids).argmin(1)
        inertia = float(_squared_distances(x, centroids)[np.arange(len(x)), labels].sum())
        if best is None or inertia < best[0]:
            best = inertia, centroids, labels
    assert best is not None
    return best[1], best[2].astype(np.int64)


def _plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeds: each next centroid drawn with probability proportional to its squared distance."""
    centroids = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        nearest = _squared_distances(x, np.stack(centroids)).min(1)
        total = nearest.sum()
        pick = rng.choice(len(x), p=nearest / total) if total > 0 else rng.integers(len(x))
        centroids.append(x[pick])
    return np.stack(centroids)


def _squared_distances(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """``[D, k]`` squared Euclidean distances of rows of ``x [D, B]`` to ``centroids [k, B]`` (>= 0)."""
    squared = (x**2).sum(1)[:, None] + (centroids**2).sum(1)[None] - 2.0 * x @ centroids.T
    return np.maximum(squared, 0.0)


def mean_silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette (Euclidean) of points ``x [D, B]`` in clusters ``labels int64 [D]``; 0 for a lone point.

    s = (b - a) / max(a, b), a the mean distance to the rest of the point's cluster, b the least mean distance
    to another cluster. -1 when all points are in one cluster (no separation at all).
    """
    clusters = np.unique(labels)
    if clusters.size < 2:
        return -1.0
    distance = np.sqrt(_squared_distances(x, x))
    np.fill_diagonal(distance, 0.0)
    member = labels[:, None] == clusters[None]  # [D, C]
    sizes = member.sum(0)
    totals = distance @ member  # [D, C] summed distance to each cluster
    own = member.argmax(1)
    own_size = sizes[own]
    a = totals[np.arange(len(x)), own] / np.maximum(own_size - 1, 1)
    others = np.where(member, np.inf, totals / sizes[None])
    b = others.min(1)
    s = np.where(own_size > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(s.mean())
