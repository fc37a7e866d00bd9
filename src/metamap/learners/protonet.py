"""Prototypical Networks (Snell et al. 2017), squared Euclidean distance.

A class's prototype is the mean embedding of its support examples; a query's
logit for class c is ``-||f(x) - prototype_c||^2``.
"""

from __future__ import annotations

import torch

from metamap.learners.metric import EmbeddingLearner, SupportSet


class ProtoNet(EmbeddingLearner):
    """Prototypical Networks on any embedding backbone."""

    def scores(self, support: SupportSet, query_embedding: torch.Tensor) -> torch.Tensor:
        prototypes = support.class_means()
        return -squared_distances(query_embedding, prototypes)


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a [T, Q, D]``, ``b [T, N, D]`` -> ``[T, Q, N]`` squared Euclidean distances."""
    return ((a[:, :, None, :] - b[:, None, :, :]) ** 2).sum(-1)
