"""Few-shot evaluation: a metric per test task, summarised as mean and 95% interval."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from metamap.errors import ConfigError
from metamap.learners.base import ADAPT_DEFAULTS, AdaptOptions, MetaLearner
from metamap.nn.devices import module_device
from metamap.report import mean_ci95
from metamap.tasks.family import TaskFamily, make_generator


@dataclass(frozen=True)
class Score:
    """``metric`` ("mse" or "accuracy") over ``n_tasks`` test tasks: mean and 95% CI half-width.

    ``diverged`` counts tasks whose adapted predictions were not finite (the
    inner loop blew up); if any did, ``mean`` is ``inf`` (MSE) or ``nan``
    (accuracy) rather than an average over the survivors.
    """

    metric: str
    mean: float
    ci95: float
    n_tasks: int
    diverged: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        if self.diverged:
            return f"{self.metric}: diverged on {self.diverged} of {self.n_tasks} tasks (non-finite predictions)"
        scale = 100.0 if self.metric == "accuracy" else 1.0
        unit = "%" if self.metric == "accuracy" else ""
        return f"{self.metric} {self.mean * scale:.4g}{unit} ± {self.ci95 * scale:.2g}{unit} (n={self.n_tasks})"


def evaluate_learner(
    learner: MetaLearner,
    family: TaskFamily,
    n_tasks: int = 600,
    seed: int = 0,
    tasks_per_batch: int = 25,
    options: AdaptOptions = ADAPT_DEFAULTS,
) -> Score:
    """Adapt to ``n_tasks`` tasks drawn from ``family`` (use its test split) and score the queries.

    The tasks depend only on ``seed``, so learners compared with the same seed
    see the same tasks. ``options`` go to ``learner.adapt`` (e.g. ``steps``).
    The metric is the tasks': MSE for regression, accuracy for classification.
    """
    if n_tasks < 1 or tasks_per_batch < 1:
        raise ConfigError(f"n_tasks and tasks_per_batch must be >= 1, got {n_tasks} and {tasks_per_batch}")
    generator = make_generator(seed)
    device = module_device(learner)
    values = []
    remaining = n_tasks
    classification = False
    while remaining > 0:
        episode = family.sample(min(tasks_per_batch, remaining), generator)
        values.append(learner.evaluate(episode.to(device), options).detach().cpu())
        remaining -= episode.n_tasks
        classification = episode.is_classification
    per_task = torch.cat(values)
    metric = "accuracy" if classification else "mse"
    diverged = int((~torch.isfinite(per_task)).sum())
    if diverged:
        worst = math.inf if metric == "mse" else math.nan
        return Score(metric, worst, math.nan, int(per_task.numel()), diverged)
    mean, ci = mean_ci95(per_task)
    return Score(metric=metric, mean=mean, ci95=ci, n_tasks=int(per_task.numel()))
