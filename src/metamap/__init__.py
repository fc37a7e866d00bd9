"""metamap: meta-learning and diffusion models for scientific and spatial data.

Everything is a mapping: a task family is a family of mappings, a meta-learner
learns the family so that a new member is learned from a handful of examples.
"""

from metamap.errors import CheckpointError, ConfigError, DataError, MetamapError, ShapeError, TrainingInterrupted

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "MetamapError",
    "ShapeError",
    "TrainingInterrupted",
    "__version__",
]
