"""Task engine: episodes (support/query batches) and the families that sample them."""

from metamap.tasks.classification import NWayKShot
from metamap.tasks.episode import Episode, concat_episodes
from metamap.tasks.family import SPLITS, TaskFamily, make_generator
from metamap.tasks.omniglot import load_omniglot, omniglot_class_splits, omniglot_family
from metamap.tasks.sequence import SequenceEpisodes, instance_index, shift_labels, shuffled_sequences
from metamap.tasks.sinusoid import Sinusoid

__all__ = [
    "SPLITS",
    "Episode",
    "NWayKShot",
    "SequenceEpisodes",
    "Sinusoid",
    "TaskFamily",
    "concat_episodes",
    "instance_index",
    "load_omniglot",
    "make_generator",
    "omniglot_class_splits",
    "omniglot_family",
    "shift_labels",
    "shuffled_sequences",
]
