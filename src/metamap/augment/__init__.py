"""Generative task augmentation: synthetic tasks from a generator fitted on the meta-training tasks.

- :mod:`metamap.augment.generators`: ``PCAGaussian`` and ``LatentDiffusion``,
  ``fit(samples [n, D])`` / ``sample(n, generator) -> [n, D]``.
- :mod:`metamap.augment.family`: ``AugmentedFamily`` (a fraction of each
  meta-train batch synthetic; off by default).

The package knows no domain; each domain turns drawn samples into its own
synthetic tasks (e.g. :class:`metamap.physics.augmentation.SyntheticSystems`).
"""

from metamap.augment.family import AugmentedFamily
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
    "fit_and_draw",
    "make_generator_model",
]
