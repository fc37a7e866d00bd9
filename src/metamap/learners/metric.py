"""What Prototypical and Matching Networks share: an embedding and a query softmax.

Adaptation is not gradient descent: it embeds the support set. The
meta-loss is the cross-entropy of the query labels under the learner's
class scores ``[T, Q, n_way]``. Labels are class indices ``0..n_way-1`` per
task; ``n_way`` is read from the support labels (the largest label + 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metamap.errors import ShapeError
from metamap.learners.base import ADAPT_DEFAULTS, AdaptOptions, MetaLearner
from metamap.learners.losses import per_task_loss
from metamap.tasks.episode import Episode


class EmbeddingLearner(MetaLearner):
    """Base of metric learners: ``model`` embeds ``[N, *x_shape]`` to ``[N, D]``."""

    outputs_logits = False

    def __init__(self, model: nn.Module, *, chunk_size: int | None = None) -> None:
        super().__init__(model, loss="cross_entropy", chunk_size=chunk_size)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, N, *x_shape]`` -> ``[T, N, D]``."""
        t, n = x.shape[:2]
        z: torch.Tensor = self.model(x.reshape(t * n, *x.shape[2:]))
        return z.reshape(t, n, -1)

    def scores(self, support: SupportSet, query_embedding: torch.Tensor) -> torch.Tensor:
        """Class scores (logits or log-probabilities) ``[T, Q, n_way]``."""
        raise NotImplementedError

    def adapt_checked(
        self,
        x_support: torch.Tensor,
        y_support: torch.Tensor,
        support_mask: torch.Tensor | None,
        options: AdaptOptions,
    ) -> AdaptedEmbedding:
        """Embed the support set ``[T, S, ...]``; metric learners take no adapt options."""
        return AdaptedEmbedding(self, SupportSet.build(self.embed(x_support), y_support, support_mask))

    def meta_loss(self, episode: Episode) -> torch.Tensor:
        """Mean query cross-entropy of the class scores against the embedded support set."""
        adapted = self.adapt_checked(episode.x_support, episode.y_support, episode.support_mask, ADAPT_DEFAULTS)
        scores = adapted.predict(episode.x_query)
        return per_task_loss(self.loss, scores, episode.y_query, episode.query_mask).mean()


class SupportSet:
    """Embedded support set: ``embedding [T, S, D]``, ``one_hot [T, S, n_way]`` (zero rows where masked)."""

    def __init__(self, embedding: torch.Tensor, one_hot: torch.Tensor) -> None:
        self.embedding = embedding
        self.one_hot = one_hot

    @classmethod
    def build(cls, embedding: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None) -> SupportSet:
        if labels.dtype != torch.int64 or labels.dim() != 2:
            raise ShapeError(
                f"metric learners need int64 labels [tasks, support], got {labels.dtype} {list(labels.shape)}"
            )
        n_way = int(labels.max()) + 1
        one_hot = F.one_hot(labels, n_way).to(embedding.dtype)
        if mask is not None:
            one_hot = one_hot * mask[..., None].to(embedding.dtype)
        empty = one_hot.sum(1) == 0
        if bool(empty.any()):
            raise ShapeError(
                f"every class needs at least one (unmasked) support example; "
                f"{int(empty.sum())} (task, class) pair(s) have none"
            )
        return cls(embedding, one_hot)

    def class_means(self) -> torch.Tensor:
        """Prototypes ``[T, n_way, D]``: mean embedding of each class's support examples."""
        counts = self.one_hot.sum(1)[..., None]
        return torch.einsum("tsn,tsd->tnd", self.one_hot, self.embedding) / counts


class AdaptedEmbedding:
    """``predict(x [T, Q, ...]) -> scores [T, Q, n_way]`` against the embedded support set."""

    def __init__(self, learner: EmbeddingLearner, support: SupportSet) -> None:
        self.learner = learner
        self.support = support

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.learner.scores(self.support, self.learner.embed(x))
