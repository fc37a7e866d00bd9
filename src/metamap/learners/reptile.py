"""Reptile (Nichol et al. 2018): move the initialisation towards adapted weights.

Reptile's update ``theta <- theta + epsilon * mean_t(phi_t - theta)`` is not
the gradient of a task loss; it is the gradient of the surrogate
``0.5 * mean_t ||theta - stopgrad(phi_t)||^2``, which is what ``meta_loss``
returns, so an outer SGD step of size epsilon (or Adam, as in the paper's
experiments) performs Reptile, and gradients all-reduce across processes like
any other learner's. The inner loop runs ``inner_steps`` SGD steps on the
support set and the query set together (Reptile does not split them).
"""

from __future__ import annotations

import torch

from metamap.learners.gradient import GradientLearner
from metamap.tasks.episode import Episode


class Reptile(GradientLearner):
    """Reptile with SGD inner steps; ``meta_loss`` is the surrogate above."""

    def second_order(self) -> bool:
        return False

    def meta_loss(self, episode: Episode) -> torch.Tensor:
        x, y, mask = episode.all_examples()
        params = self.meta_params()
        fast = self.inner_loop(params, x, y, mask, self.inner_steps, batched=True, keep_graph=False)
        distance = sum(
            ((params[n] - fast[n].detach()) ** 2).reshape(episode.n_tasks, -1).sum(-1) for n in self.adapted_names
        )
        assert isinstance(distance, torch.Tensor)  # adapted_names is never empty
        return 0.5 * distance.mean()
