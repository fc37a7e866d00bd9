"""Baseline "pretrain on all tasks, then fine-tune" (Finn et al. 2017, section 5.1).

Meta-training fits one model to the pooled examples of all tasks (support and
query alike, no adaptation); at test time it is fine-tuned on each task's
support set with the same SGD steps the meta-learners use. An untrained
instance is the "fit from scratch" baseline.
"""

from __future__ import annotations

import torch

from metamap.learners.gradient import GradientLearner
from metamap.learners.losses import per_task_loss
from metamap.tasks.episode import Episode


class Pretrained(GradientLearner):
    """Joint training on pooled tasks; ``adapt`` fine-tunes with ``inner_steps`` SGD steps."""

    def meta_loss(self, episode: Episode) -> torch.Tensor:
        x, y, mask = episode.all_examples()
        t, n = x.shape[:2]
        pred = self.model(x.reshape(t * n, *x.shape[2:]))
        pred = pred.reshape(t, n, *pred.shape[1:])
        return per_task_loss(self.loss, pred, y, mask).mean()
