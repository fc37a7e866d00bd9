"""Task engine: episodes (support/query batches) and the families that sample them."""

from metamap.tasks.episode import Episode
from metamap.tasks.family import SPLITS, TaskFamily, make_generator
from metamap.tasks.sinusoid import Sinusoid

__all__ = ["SPLITS", "Episode", "Sinusoid", "TaskFamily", "make_generator"]
