"""metamap: meta-learning and diffusion models for scientific and spatial data.

Everything is a mapping: a task family is a family of mappings, a meta-learner
learns the family so that a new member is learned from a handful of examples.
"""

from importlib.metadata import PackageNotFoundError, version

from metamap.errors import CheckpointError, ConfigError, DataError, MetamapError, ShapeError, TrainingInterrupted

try:  # the one version source is pyproject.toml, read from the installed distribution
    __version__ = version("metamap")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "MetamapError",
    "ShapeError",
    "TrainingInterrupted",
    "__version__",
]
