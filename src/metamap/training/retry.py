"""Meta-training that starts again at a lower inner rate when the meta-loss turns NaN."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from metamap.errors import DataError
from metamap.learners.gradient import GradientLearner
from metamap.tasks.family import TaskFamily
from metamap.training.loop import TrainConfig, meta_train

INNER_LRS = (0.05, 0.02, 0.01)


def meta_train_lowering_inner_lr(
    build: Callable[[float], GradientLearner],
    family: TaskFamily,
    config: TrainConfig,
    *,
    label: str,
    inner_lrs: Sequence[float] = INNER_LRS,
) -> GradientLearner:
    """Meta-train ``build(inner_lr)`` for each rate of ``inner_lrs`` in turn until one run finishes.

    A run whose meta-loss turns NaN (``meta_train`` raises DataError) is discarded and a fresh
    learner is built at the next, lower rate; the rate used is ``learner.inner_lr``. DataError
    naming ``label`` when every rate diverges.
    """
    for inner_lr in inner_lrs:
        learner = build(inner_lr)
        try:
            meta_train(learner, family, config)
        except DataError as exc:
            print(f"[{label}] {exc}; retrying with a lower inner rate")
            continue
        return learner
    raise DataError(f"{label} diverged at every inner rate {tuple(inner_lrs)}")
