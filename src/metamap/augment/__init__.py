"""Generative task augmentation: synthetic tasks from a generator fitted on the meta-training tasks.

- :mod:`metamap.augment.generators`: ``PCAGaussian`` and ``LatentDiffusion``,
  ``fit(samples [n, D])`` / ``sample(n, generator) -> [n, D]``.
- :mod:`metamap.augment.family`: ``AugmentedFamily`` (a fraction of each
  meta-train batch synthetic; off by default) and ``SyntheticSystems``
  (physics tasks of generated trajectories).
"""

from metamap.augment.family import AugmentedFamily, SyntheticSystems, concat_episodes, synthetic_like
from metamap.augment.generators import (
    GENERATORS,
    LatentDiffusion,
    PCAGaussian,
    PCASpace,
    fit_and_draw,
    make_generator_model,
)

__all__ = [
    "GENERATORS",
    "AugmentedFamily",
    "LatentDiffusion",
    "PCAGaussian",
    "PCASpace",
    "SyntheticSystems",
    "concat_episodes",
    "fit_and_draw",
    "make_generator_model",
    "synthetic_like",
]
