"""Few-shot star / galaxy / quasar classification with Prototypical and Matching Networks.

Objects are split by sky cell into a training region and a test region (no
test object, nor its neighbourhood, is seen in training). Every episode is
3-way K-shot: K labelled objects per class, 15 queries per class. The encoder
is an MLP 14-64-64-32 on the standardized photometric features (scaler from
the training region). Baseline: distance-weighted kNN on the K x 3 support
objects (neighbours chosen on episodes from the training region).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from metamap.astro.baselines import knn_classify_support
from metamap.astro.catalogue import CLASSES, Catalogue
from metamap.astro.features import fit_scaler, standardized_features
from metamap.astro.tasks import sky_cells
from metamap.errors import DataError
from metamap.learners import make_learner
from metamap.learners.base import MetaLearner
from metamap.nn import MLP
from metamap.preprocessing import Standardizer
from metamap.report import mean_ci95
from metamap.seeding import seeded
from metamap.tasks.classification import NWayKShot
from metamap.tasks.episode import Episode
from metamap.tasks.family import check_split, make_generator
from metamap.training import TrainConfig, evaluate_learner, meta_train

LEARNERS = ("protonet", "matching")
N_QUERY = 15
KNN_OPTIONS = (1, 3, 5)


@dataclass(frozen=True)
class RegionFamily:
    """3-way episodes from one pool per region: ``families`` maps split names to :class:`NWayKShot`."""

    families: dict[str, NWayKShot]
    split_name: str = "train"

    def split(self, name: str) -> RegionFamily:
        return replace(self, split_name=check_split(name))

    def sample(self, n_tasks: int, generator: torch.Generator) -> Episode:
        if self.split_name not in self.families:
            raise DataError(f"no {self.split_name!r} region; regions: {sorted(self.families)}")
        return self.families[self.split_name].sample(n_tasks, generator)


def class_pool(cat: Catalogue, scaler: Standardizer, seed: int) -> torch.Tensor:
    """``float32 [3, n, 14]``: n objects of each class (n = the rarest class's count), drawn at random."""
    rng = np.random.default_rng(seed)
    rows = [np.flatnonzero(cat.label == name) for name in CLASSES]
    n = min(len(r) for r in rows)
    if n < 2 * N_QUERY:
        raise DataError(
            f"{cat.source}: class counts {[len(r) for r in rows]} for {CLASSES}; need at least {2 * N_QUERY} of each"
        )
    picked = np.stack([rng.choice(r, n, replace=False) for r in rows])
    x = standardized_features(scaler, cat.mags[picked.ravel()], cat.valid[picked.ravel()])
    return torch.as_tensor(x).reshape(len(CLASSES), n, -1)


def region_split(cat: Catalogue, *, cell_deg: float, test_fraction: float, seed: int) -> tuple[Catalogue, Catalogue]:
    """Objects split by whole sky cells into (train region, test region); random rows without ra/dec."""
    rng = np.random.default_rng(seed)
    if cat.ra is None or cat.dec is None:
        test = rng.random(len(cat)) < test_fraction
    else:
        cells = sky_cells(cat.ra, cat.dec, cell_deg)
        unique = np.unique(cells)
        test = np.isin(cells, unique[rng.random(unique.size) < test_fraction])
    return cat.subset(~test), cat.subset(test)


def knn_accuracy(family: NWayKShot, k: int, n_episodes: int, seed: int) -> list[float]:
    """Per-episode accuracy of kNN on the support set, on the episodes ``evaluate_learner`` draws with ``seed``."""
    generator, accuracy = make_generator(seed), []
    while len(accuracy) < n_episodes:
        ep = family.sample(min(25, n_episodes - len(accuracy)), generator)
        for t in range(ep.n_tasks):
            pred = knn_classify_support(ep.x_support[t].numpy(), ep.y_support[t].numpy(), ep.x_query[t].numpy(), k)
            accuracy.append(float(np.mean(pred == ep.y_query[t].numpy())))
    return accuracy


def run_classification(
    cat: Catalogue,
    *,
    shots: Sequence[int] = (1, 5, 10),
    train_k: int = 5,
    steps: int = 2000,
    episodes: int = 600,
    cell_deg: float = 10.0,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Meta-train ProtoNet and Matching on the training region (on ``device``); 3-way K-shot accuracy on the
    test region."""
    if cat.label is None:
        raise DataError(f"{cat.source}: classification needs a class column (STAR / GALAXY / QSO)")
    train, test = region_split(cat, cell_deg=cell_deg, test_fraction=0.3, seed=seed)
    scaler = fit_scaler(train.mags, train.valid)
    train_pool, test_pool = class_pool(train, scaler, seed), class_pool(test, scaler, seed + 1)
    family = NWayKShot(train_pool, n_way=3, k_shot=train_k, n_query=N_QUERY, split_name="train")
    # Built before training, so that a K the test region cannot provide is refused before any work.
    test_families = {k: NWayKShot(test_pool, n_way=3, k_shot=k, n_query=N_QUERY, split_name="test") for k in shots}
    learners: dict[str, MetaLearner] = {}
    for name in LEARNERS:
        with seeded(seed):
            learners[name] = make_learner(name, MLP(train_pool.shape[-1], [64, 64], 32)).to(device)
        meta_train(
            learners[name],
            RegionFamily({"train": family}),
            TrainConfig(steps=steps, meta_batch=16, lr=1e-3, seed=seed, checkpoint_every=0, progress=False),
        )
    knn_k = max(KNN_OPTIONS, key=lambda k: np.mean(knn_accuracy(family, k, 200, seed + 3)))
    by_k: dict[str, dict[str, Any]] = {}
    for k in shots:
        test_family = test_families[k]
        row = {
            name: evaluate_learner(learner, test_family, n_tasks=episodes, seed=seed + 100 + k).as_dict()
            for name, learner in learners.items()
        }
        mean, ci = mean_ci95(knn_accuracy(test_family, knn_k, episodes, seed + 100 + k))
        row["knn_support"] = {"metric": "accuracy", "mean": mean, "ci95": ci, "n_tasks": episodes}
        by_k[str(k)] = row
    return {
        "protocol": f"3-way (STAR/GALAXY/QSO) K-shot, {N_QUERY} queries per class, {episodes} episodes; "
        f"objects split by {cell_deg:g} deg sky cells into train region and test region",
        "n_per_class": {"train": int(train_pool.shape[1]), "test": int(test_pool.shape[1])},
        "meta_training": {
            "steps": steps,
            "meta_batch": 16,
            "train_k": train_k,
            "encoder": "MLP 14-64-64-32",
            "outer": "adam 1e-3",
        },
        "knn_neighbours_chosen_on_train_region": knn_k,
        "by_k": by_k,
    }
