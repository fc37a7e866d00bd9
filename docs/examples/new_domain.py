"""A new domain's method comparison on the experiment layer: exponential decay curves.

Each task is one curve ``y = a * exp(-b * t)`` (amplitude ``a``, rate ``b``
drawn per task) seen at a few times ``t``; a new curve must be predicted from
its first few points. The classical estimator is a least-squares line through
``log y``; the learned method is MAML on an MLP; both sit behind ``Method``,
their settings are chosen on validation curves, and one table compares them.
Run: ``python docs/examples/new_domain.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from metamap.experiment import AdaptedLearner, ResultTable, ValidationTask, choose_on_validation
from metamap.learners import make_learner
from metamap.nn import MLP
from metamap.seeding import seeded
from metamap.tasks import Episode, make_generator
from metamap.tasks.family import check_split, split_generator
from metamap.training import TrainConfig, meta_train


@dataclass(frozen=True)
class DecayCurves:
    """A TaskFamily: ``x [T, S, 1]`` times in [0, 2], ``y [T, S, 1]`` a decay curve plus 1% noise."""

    k_shot: int = 5
    n_query: int = 20
    split_name: str = "train"

    def split(self, name: str) -> DecayCurves:
        return replace(self, split_name=check_split(name))

    def sample(self, n_tasks: int, generator: torch.Generator) -> Episode:
        g = split_generator(generator, self.split_name)
        a = 0.5 + torch.rand(n_tasks, 1, 1, generator=g)
        b = 0.2 + 1.8 * torch.rand(n_tasks, 1, 1, generator=g)
        t = 2 * torch.rand(n_tasks, self.k_shot + self.n_query, 1, generator=g)
        y = a * torch.exp(-b * t) * (1 + 0.01 * torch.randn(t.shape, generator=g))
        s = self.k_shot
        return Episode(t[:, :s], y[:, :s], t[:, s:], y[:, s:])


class LogLinear:
    """The classic: least squares of ``log y`` on ``t`` per task, with a ridge ``penalty`` on the slope."""

    def fit(self, source: Any) -> None:
        """Learns nothing from the source tasks."""

    def adapt(self, support: tuple[torch.Tensor, torch.Tensor], *, penalty: float) -> None:
        t, log_y = support[0][..., 0], support[1].clamp_min(1e-6).log()[..., 0]
        t_mean, y_mean = t.mean(1, keepdim=True), log_y.mean(1, keepdim=True)
        slope = ((t - t_mean) * (log_y - y_mean)).sum(1, keepdim=True) / (((t - t_mean) ** 2).sum(1, True) + penalty)
        self.slope, self.intercept = slope, y_mean - slope * t_mean

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.intercept[..., None] + self.slope[..., None] * x)


def mse(predictions: list[torch.Tensor], truths: list[torch.Tensor]) -> float:
    return float(torch.mean(torch.stack([((p - y) ** 2).mean() for p, y in zip(predictions, truths, strict=True)])))


def compare(steps: int = 300, seed: int = 0) -> ResultTable:
    """Train MAML on the train curves, tune both methods on val curves, score both on test curves."""
    family = DecayCurves()
    with seeded(seed):
        learner = make_learner("maml", MLP(1, [40, 40], 1), inner_steps=5, inner_lr=0.1, loss="mse")
    meta_train(learner, family, TrainConfig(steps=steps, meta_batch=16, seed=seed, checkpoint_every=0, progress=False))
    methods = {
        "log-linear least squares": (LogLinear(), [{"penalty": p} for p in (0.0, 0.01, 0.1, 1.0)]),
        "maml": (AdaptedLearner(learner), [{"steps": s} for s in (0, 5, 20, 80, 320)]),
    }
    val, test = (family.split(name).sample(100, make_generator(seed + i)) for i, name in ((1, "val"), (2, "test")))
    table = ResultTable(("test_mse",), setting_name="chosen on val")
    for name, (method, candidates) in methods.items():
        validation = [ValidationTask((val.x_support, val.y_support), val.x_query, val.y_query)]
        choice = choose_on_validation(method, candidates, validation, mse, name=name)
        method.adapt((test.x_support, test.y_support), **choice.settings)
        table.add(name, {"test_mse": mse([method.predict(test.x_query)], [test.y_query])}, setting=str(choice.settings))
    return table


if __name__ == "__main__":
    print(compare().to_text())
