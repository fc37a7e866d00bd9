"""Traffic patterns in a new city: Prototypical Networks over sensor-day profiles.

A *sensor-day* is one sensor's readings over one whole calendar day (midnight
to midnight). Its *profile* is the mean reading in each bin (15 minutes, or
the data's step where it is longer; ``--bin``) divided by that sensor-day's
95th percentile reading: for speeds the free-flow speed (1 is free flow), for
counts and flows the day's busy level. Dividing by the day's own level makes
profiles of different roads and cities comparable.

Pattern labels are **weak supervision**, a readable, deterministic summary of
the profile, not ground truth about what happened on the road. They come from
one of two labellings (:mod:`~metamap.traffic.patterns.labels`): a fixed rule
for speeds (congestion is a drop below 70% of free flow;
:func:`~metamap.traffic.patterns.labels.label_profiles`), or, for counts and
flows (``auto`` picks them where the readings are non-negative integers),
k-means clusters of the source city's profiles with k chosen by silhouette
(:mod:`~metamap.traffic.patterns.clusters`). The question this module answers
is whether an embedding meta-trained on one city's sensor-days lets a handful
of labelled days per pattern in another city sort all the rest.

Protocol of :func:`~metamap.traffic.patterns.run.run_patterns`:

1. Source city: sensor-days, split by sensor into train (80%) and val (20%);
   ProtoNet (squared Euclidean) on a small 1-D conv embedding is meta-trained on
   episodes with every pattern that has enough days in both splits.
2. Target city: K labelled sensor-days per pattern are drawn at random
   (K = 1, 5; only patterns with at least K + 3 target days take part) and
   every other target sensor-day of those patterns is assigned to the
   nearest prototype. Accuracy (and balanced accuracy, the mean recall
   over patterns, since free-flow days dominate) against the weak labels is
   averaged over random draws of the labelled days: mean and 95% interval over
   draws. The draws share the target days, so the interval measures the luck
   of the labelled examples, not of the city.
3. Baselines on the same labelled days: nearest centroid and 1-nearest
   neighbour on the raw profiles (the embedding's input).

Modules: :mod:`~metamap.traffic.patterns.labels` (the speed rule),
:mod:`~metamap.traffic.patterns.clusters` (clusters of profiles),
:mod:`~metamap.traffic.patterns.days` (sensor-day profiles),
:mod:`~metamap.traffic.patterns.episodes` (few-shot tasks, by-sensor split),
:mod:`~metamap.traffic.patterns.encoder` (the embedding and its training),
:mod:`~metamap.traffic.patterns.scoring` (assignment and its scores),
:mod:`~metamap.traffic.patterns.plots` and :mod:`~metamap.traffic.patterns.run`
(the run end to end).
"""

from metamap.traffic.patterns.clusters import ProfileClusters, mean_silhouette
from metamap.traffic.patterns.days import SensorDays, class_counts, default_bin_minutes, sensor_days
from metamap.traffic.patterns.encoder import ProfileEncoder, train_protonet
from metamap.traffic.patterns.episodes import PatternEpisodes, sensor_splits
from metamap.traffic.patterns.labels import PATTERNS, Labelling, SpeedRule, label_profiles
from metamap.traffic.patterns.run import run_patterns
from metamap.traffic.patterns.scoring import few_shot_scores, sensor_patterns, target_classes

__all__ = [
    "PATTERNS",
    "Labelling",
    "PatternEpisodes",
    "ProfileClusters",
    "ProfileEncoder",
    "SensorDays",
    "SpeedRule",
    "class_counts",
    "default_bin_minutes",
    "few_shot_scores",
    "label_profiles",
    "mean_silhouette",
    "run_patterns",
    "sensor_days",
    "sensor_patterns",
    "sensor_splits",
    "target_classes",
    "train_protonet",
]
