"""Matching Networks (Vinyals et al. 2016), cosine attention, without full context embeddings.

``p(y = c | x) = sum_i a(x, x_i) [y_i = c]`` with
``a = softmax_i(scale * cos(f(x), f(x_i)))`` over the support examples;
``predict`` returns ``log p`` ``[T, Q, n_way]``, trained with the NLL.
``scale = 1`` is the paper's plain cosine; a larger one sharpens the attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metamap.learners.metric import EmbeddingLearner, SupportSet


class MatchingNet(EmbeddingLearner):
    """Matching Networks with cosine-similarity attention over the support set."""

    def __init__(self, model: nn.Module, *, scale: float = 1.0, chunk_size: int | None = None) -> None:
        super().__init__(model, chunk_size=chunk_size)
        self.scale = scale

    def scores(self, support: SupportSet, query_embedding: torch.Tensor) -> torch.Tensor:
        cosine = torch.einsum(
            "tqd,tsd->tqs", F.normalize(query_embedding, dim=-1), F.normalize(support.embedding, dim=-1)
        )
        valid = support.one_hot.sum(-1) > 0  # [T, S]: masked support examples get no attention
        cosine = cosine.masked_fill(~valid[:, None, :], float("-inf"))
        attention = torch.softmax(self.scale * cosine, dim=-1)
        probabilities = torch.einsum("tqs,tsn->tqn", attention, support.one_hot)
        return torch.log(probabilities.clamp(min=1e-12))
