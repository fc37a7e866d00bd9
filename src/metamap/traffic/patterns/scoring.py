"""Few-shot assignment of target sensor-days to patterns and its scores: ProtoNet against raw-profile baselines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from metamap.errors import DataError
from metamap.learners import make_learner
from metamap.learners.base import MetaLearner
from metamap.nn.devices import module_device
from metamap.report import mean_ci95
from metamap.traffic.patterns.labels import named_counts

MIN_QUERY = 3  # target days a pattern needs beyond its labelled ones to be scored


def assign(
    learner: MetaLearner, x: torch.Tensor, support: torch.Tensor, support_y: torch.Tensor, query: torch.Tensor
) -> torch.Tensor:
    """Labels ``int64 [Q]`` of days ``x[query]`` from the ProtoNet adapted to ``x[support]`` (labels ``0..C-1``).

    ``x [D, F]``; ``support``, ``query`` are int64 day indices. The days are moved to the learner's device;
    the labels come back on the CPU.
    """
    device = module_device(learner, default=x.device)
    with torch.no_grad():
        adapted = learner.adapt(x[support][None].to(device), support_y[None].to(device))
        return adapted.predict(x[query][None].to(device))[0].argmax(-1).cpu()


def nearest_neighbour(
    x: torch.Tensor, support: torch.Tensor, support_y: torch.Tensor, query: torch.Tensor
) -> torch.Tensor:
    """Labels ``int64 [Q]``: the label of the nearest (Euclidean) support day of each query day."""
    return support_y[torch.cdist(x[query], x[support]).argmin(1)]


def few_shot_scores(
    learner: MetaLearner,
    x: torch.Tensor,
    labels: torch.Tensor,
    classes: Mapping[int, Sequence[int]],
    draws: int,
    generator: torch.Generator,
) -> dict[str, dict[str, dict[str, float]]]:
    """Accuracy of ProtoNet and the two raw-profile baselines, by K, over ``draws`` random labelled sets.

    ``x [D, B]`` target profiles, ``labels int64 [D]`` their rule patterns;
    ``classes`` maps each K to the patterns scored with K labelled days (see
    :func:`target_classes`); only days of those patterns take part. Returns
    ``{str(K): {method: {mean, ci95, balanced_mean, balanced_ci95}}}``. At
    K = 1 nearest centroid and 1-NN are the same method.
    """
    centroid = make_learner("protonet", nn.Identity())  # ProtoNet on the raw profile = nearest centroid
    methods = {
        "protonet": lambda s, y, q: assign(learner, x, s, y, q),
        "nearest_centroid": lambda s, y, q: assign(centroid, x, s, y, q),
        "knn1": lambda s, y, q: nearest_neighbour(x, s, y, q),
    }
    scores = {}
    for k, patterns in classes.items():
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in methods}
        for _ in range(draws):
            support, support_y, query, query_y = draw_labelled(labels, patterns, k, generator)
            for name, method in methods.items():
                runs[name].append(_accuracies(method(support, support_y, query), query_y, len(patterns)))
        scores[str(k)] = {name: _summary(values) for name, values in runs.items()}
    return scores


def draw_labelled(labels: torch.Tensor, classes: Sequence[int], k: int, generator: torch.Generator):
    """``k`` random labelled days per class (support, labels 0..C-1) and all other days of the classes (query)."""
    support, support_y, query, query_y = [], [], [], []
    for position, c in enumerate(classes):
        days = (labels == c).nonzero().squeeze(1)
        if days.numel() <= k:
            raise DataError(f"pattern {c} has {days.numel()} days; {k} labelled ones need at least {k + 1}")
        days = days[torch.randperm(days.numel(), generator=generator)]
        support.append(days[:k])
        query.append(days[k:])
        support_y.append(torch.full((k,), position))
        query_y.append(torch.full((days.numel() - k,), position))
    return torch.cat(support), torch.cat(support_y), torch.cat(query), torch.cat(query_y)


def _accuracies(predicted: torch.Tensor, truth: torch.Tensor, n_classes: int) -> tuple[float, float]:
    """Accuracy and balanced accuracy (mean recall over the classes) in [0, 1]."""
    correct = (predicted == truth).double()
    recall = [float(correct[truth == c].mean()) for c in range(n_classes)]
    return float(correct.mean()), float(np.mean(recall))


def _summary(values: list[tuple[float, float]]) -> dict[str, float]:
    accuracy, balanced = zip(*values)
    mean, ci = mean_ci95(accuracy)
    balanced_mean, balanced_ci = mean_ci95(balanced)
    return {"mean": mean, "ci95": ci, "balanced_mean": balanced_mean, "balanced_ci95": balanced_ci}


def target_classes(labels: np.ndarray, k: int, names: Sequence[str]) -> tuple[int, ...]:
    """Patterns with at least ``k + MIN_QUERY`` of the target's days (``labels int64 [D]``, into ``names``).

    Raises DataError naming the counts when fewer than 2 patterns qualify.
    """
    counts = np.bincount(labels, minlength=len(names))
    classes = tuple(c for c in range(len(names)) if counts[c] >= k + MIN_QUERY)
    if len(classes) < 2:
        raise DataError(
            f"the target needs at least 2 patterns with {k + MIN_QUERY} sensor-days each ({k} labelled + "
            f"{MIN_QUERY} to assign); got {named_counts(counts, names)}"
        )
    return classes


def sensor_patterns(day_patterns: np.ndarray, sensor: np.ndarray, n_sensors: int) -> np.ndarray:
    """Majority pattern of each sensor over its days: ``int64 [n_sensors]``, -1 for a sensor without days.

    ``day_patterns``, ``sensor``: ``int64 [D]``; ties go to the lower pattern index.
    """
    votes = np.zeros((n_sensors, int(day_patterns.max(initial=0)) + 1), dtype=np.int64)
    np.add.at(votes, (sensor, day_patterns), 1)
    return np.where(votes.sum(1) > 0, votes.argmax(1), -1)
