"""Traffic patterns in a new city: Prototypical Networks over sensor-day speed profiles.

A *sensor-day* is one sensor's readings over one whole calendar day (midnight
to midnight). Its *profile* is the mean speed in each 15-minute bin divided
by that sensor-day's free-flow speed, the 95th percentile of its observed
readings; 1 is free flow, 0.5 half of it. Dividing by the day's own free-flow
speed makes profiles of different roads and cities comparable.

Pattern labels come from a fixed rule on the profile (:func:`label_profiles`).
They are **weak supervision**: a readable, deterministic summary of the
profile, not ground truth about what happened on the road. The question this
module answers is whether an embedding meta-trained on one city's
sensor-days lets a handful of labelled days per pattern in another city sort
all the rest.

Protocol of :func:`run_patterns`:

1. Source city: sensor-days, split by sensor into train (80%) and val (20%);
   ProtoNet (squared Euclidean) on a small 1-D conv embedding is meta-trained on
   episodes with every pattern that has enough days in both splits.
2. Target city: K labelled sensor-days per pattern are drawn at random
   (K = 1, 5; only patterns with at least K + 3 target days take part) and
   every other target sensor-day of those patterns is assigned to the
   nearest prototype. Accuracy (and balanced accuracy, the mean recall
   over patterns, since free-flow days dominate) against the rule labels is
   averaged over random draws of the labelled days: mean and 95% interval over
   draws. The draws share the target days, so the interval measures the luck
   of the labelled examples, not of the city.
3. Baselines on the same labelled days: nearest centroid and 1-nearest
   neighbour on the raw profiles (the embedding's input).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from metamap.errors import ConfigError, DataError, ShapeError, describe
from metamap.learners import make_learner
from metamap.learners.base import MetaLearner
from metamap.nn.devices import module_device
from metamap.plotting import pyplot, save_png
from metamap.report import mean_ci95, write_json
from metamap.seeding import seeded
from metamap.tasks.episode import Episode
from metamap.tasks.family import check_split, make_generator
from metamap.traffic.data import TrafficData
from metamap.training import TrainConfig, evaluate_learner, meta_train

PATTERNS = ("free_flow", "morning_peak", "evening_peak", "both_peaks", "all_day_congestion")

# The labelling rule (hours of day; profile values are fractions of free flow).
CONGESTED = 0.7  # a bin is congested when its speed is below 70% of free flow
MORNING = (5.0, 12.0)  # the two halves of the waking day, split at noon
EVENING = (12.0, 21.0)
PEAK_HOURS = 1.0  # a sustained drop: at least this many congested hours in a half
DAYTIME = (6.0, 20.0)
ALL_DAY_FRACTION = 0.5  # all-day congestion: at least half of the daytime congested

FREE_FLOW_PERCENTILE = 95.0
MIN_QUERY = 3  # target days a pattern needs beyond its labelled ones to be scored
VAL_FRACTION = 0.2


def label_profiles(profiles: np.ndarray) -> np.ndarray:
    """Pattern of each sensor-day, as indices into :data:`PATTERNS` (weak labels).

    ``profiles [D, B]``: fractions of free-flow speed in B equal bins from
    midnight (B = 96 for 15-minute bins); NaN bins count as not congested.
    Returns ``int64 [D]``. The rule, in order:

    - ``all_day_congestion``: at least half of 06:00-20:00 congested (< 0.7);
    - ``both_peaks``: at least 1 congested hour in 05:00-12:00 and in 12:00-21:00;
    - ``morning_peak`` / ``evening_peak``: at least 1 congested hour in only
      the morning (05:00-12:00) / only the afternoon and evening (12:00-21:00);
    - ``free_flow``: otherwise (drops at night or shorter than an hour are not patterns).

    Thresholds were set on METR-LA (March 2012) so that every pattern has at
    least ~100 of its 1449 sensor-days.
    """
    profiles = np.asarray(profiles, dtype=np.float64)
    if profiles.ndim != 2 or profiles.shape[1] < 24:
        raise ShapeError(f"label_profiles: expected profiles [days, bins >= 24], got {describe(profiles)}")
    bin_hours = 24.0 / profiles.shape[1]
    starts = np.arange(profiles.shape[1]) * bin_hours
    congested = profiles < CONGESTED

    def hours_in(window: tuple[float, float]) -> np.ndarray:
        inside = (starts >= window[0]) & (starts < window[1])
        return congested[:, inside].sum(1) * bin_hours

    morning = hours_in(MORNING) >= PEAK_HOURS
    evening = hours_in(EVENING) >= PEAK_HOURS
    all_day = hours_in(DAYTIME) >= ALL_DAY_FRACTION * (DAYTIME[1] - DAYTIME[0])
    index = PATTERNS.index
    labels = np.select(
        [all_day, morning & evening, morning, evening],
        [index("all_day_congestion"), index("both_peaks"), index("morning_peak"), index("evening_peak")],
        default=index("free_flow"),
    )
    return labels.astype(np.int64)


@dataclass(frozen=True)
class SensorDays:
    """Whole-day profiles of one city's sensors (see :func:`sensor_days`).

    Attributes:
        profiles: ``float32 [D, B]`` mean observed speed per bin divided by
            ``free_flow``; NaN in a bin without readings.
        free_flow: ``float32 [D]`` free-flow speed of each sensor-day (the
            data's unit, mph for METR-LA/PeMS).
        sensor: ``int64 [D]`` the sensor's column in the TrafficData.
        day: ``datetime64[D] [D]`` the calendar day.
    """

    profiles: np.ndarray
    free_flow: np.ndarray
    sensor: np.ndarray
    day: np.ndarray

    def __len__(self) -> int:
        return int(self.profiles.shape[0])

    def filled(self) -> np.ndarray:
        """``float32 [D, B]``: profiles with empty bins interpolated linearly in time (ends held flat)."""
        filled = self.profiles.copy()
        for row in np.flatnonzero(np.isnan(filled).any(1)):
            known = ~np.isnan(filled[row])
            bins = np.arange(filled.shape[1])
            filled[row] = np.interp(bins, bins[known], filled[row, known])
        return filled

    def labels(self) -> np.ndarray:
        """``int64 [D]`` pattern indices from :func:`label_profiles`."""
        return label_profiles(self.profiles)


def sensor_days(data: TrafficData, *, bin_minutes: int = 15, max_missing: float = 0.2) -> SensorDays:
    """Cut every sensor's series into whole calendar days and normalise them.

    Days start at the first midnight in ``data.times``; a trailing part day is
    dropped. A sensor-day with more than ``max_missing`` (fraction) of its
    steps missing is skipped. Readings are averaged over ``bin_minutes``
    (a multiple of ``data.step_minutes``) and divided by the sensor-day's
    free-flow speed. Raises DataError when no whole day or no sensor-day is left.
    """
    if bin_minutes % data.step_minutes or (24 * 60) % bin_minutes:
        raise ConfigError(
            f"bin_minutes={bin_minutes} must be a multiple of the data's {data.step_minutes}-minute step "
            "and divide a day"
        )
    per_day = data.steps_per_day
    start = _first_midnight(data.times)
    n_days = (data.n_steps - start) // per_day
    if n_days < 1:
        raise DataError(
            f"{data.name}: need at least one whole calendar day ({per_day} steps of {data.step_minutes} min "
            f"from a midnight); its {data.n_steps} steps hold none"
        )
    stop = start + n_days * per_day
    speed = np.where(data.mask[start:stop], data.values[start:stop], np.nan)
    speed = speed.reshape(n_days, per_day, data.n_sensors).transpose(2, 0, 1).reshape(-1, per_day)
    rows = np.flatnonzero(np.isnan(speed).mean(1) <= max_missing)
    free_flow = np.nanpercentile(speed[rows], FREE_FLOW_PERCENTILE, axis=1)
    rows, free_flow = rows[free_flow > 0], free_flow[free_flow > 0]
    if rows.size == 0:
        raise DataError(
            f"{data.name}: no sensor-day has at most {max_missing:.0%} of its steps missing "
            f"({data.n_sensors} sensors x {n_days} whole days)"
        )
    binned = _bin_means(speed[rows], bin_minutes // data.step_minutes)
    days = data.times[start:stop:per_day].astype("datetime64[D]")
    return SensorDays(
        profiles=(binned / free_flow[:, None]).astype(np.float32),
        free_flow=free_flow.astype(np.float32),
        sensor=(rows // n_days).astype(np.int64),
        day=days[rows % n_days],
    )


def _first_midnight(times: np.ndarray) -> int:
    """Index of the first time stamp at 00:00 (``len(times)`` when there is none)."""
    midnight = times == times.astype("datetime64[D]")
    found = np.flatnonzero(midnight)
    return int(found[0]) if found.size else len(times)


def _bin_means(speed: np.ndarray, per_bin: int) -> np.ndarray:
    """``[D, steps]`` with NaN gaps -> ``[D, steps // per_bin]`` means of the readings in each bin (NaN if none)."""
    observed = ~np.isnan(speed)
    shape = (speed.shape[0], -1, per_bin)
    total = np.where(observed, speed, 0.0).reshape(shape).sum(2)
    count = observed.reshape(shape).sum(2)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


@dataclass(frozen=True, eq=False)
class PatternEpisodes:
    """N-way K-shot tasks over the pattern classes of sensor-days (a TaskFamily).

    ``x [D, F]`` float sensor-day features, ``labels int64 [D]`` pattern
    indices, ``splits`` maps split names to ``int64`` sensor-day indices
    (disjoint, e.g. by sensor). A split's classes are the patterns with at
    least ``k_shot + n_query`` days in it (:attr:`classes`); each task draws
    ``n_way`` of them (``None``: all) and ``k_shot + n_query`` distinct days of
    each. Episodes hold ``x_support [T, n_way * k_shot, F]`` and
    ``x_query [T, n_way * n_query, F]`` grouped by label (all of label 0
    first); ``meta["classes"] [T, n_way]`` is the pattern behind each label.
    """

    x: torch.Tensor = field(repr=False)
    labels: torch.Tensor = field(repr=False)
    splits: Mapping[str, torch.Tensor] = field(repr=False)
    n_way: int | None = None
    k_shot: int = 5
    n_query: int = 5
    split_name: str = "train"
    classes: tuple[int, ...] = field(init=False, default=())
    _pools: list[torch.Tensor] = field(init=False, repr=False, default_factory=list)

    def __post_init__(self) -> None:
        check_split(self.split_name)
        if self.split_name not in self.splits:
            raise ConfigError(f"PatternEpisodes: no split {self.split_name!r}; it has {sorted(self.splits)}")
        if self.k_shot < 1 or self.n_query < 1:
            raise ConfigError(f"PatternEpisodes: expected k_shot, n_query >= 1, got {self.k_shot}, {self.n_query}")
        members = self.splits[self.split_name]
        counts = torch.bincount(self.labels[members], minlength=len(PATTERNS))
        need = self.k_shot + self.n_query
        classes = tuple(c for c in range(len(PATTERNS)) if int(counts[c]) >= need)
        n_way = max(2, self.n_way or 2)
        if len(classes) < n_way:
            raise DataError(
                f"PatternEpisodes split {self.split_name!r}: needs at least {n_way} patterns with "
                f"k_shot + n_query = {need} sensor-days each; got {_named_counts(counts)}"
            )
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "_pools", [members[self.labels[members] == c] for c in classes])

    def split(self, name: str) -> PatternEpisodes:
        return replace(self, split_name=check_split(name))

    def sample(self, n_tasks: int, generator: torch.Generator) -> Episode:
        """Draw ``n_tasks`` tasks with ``generator`` as the only randomness."""
        if n_tasks < 1:
            raise ConfigError(f"PatternEpisodes.sample: n_tasks must be >= 1, got {n_tasks}")
        n_way = self.n_way or len(self.classes)
        k, m = self.k_shot, self.k_shot + self.n_query
        # [T, C, m]: for every class, m distinct days per task
        picks = torch.stack(
            [
                pool[torch.rand(n_tasks, pool.numel(), generator=generator).topk(m, dim=1).indices]
                for pool in self._pools
            ],
            dim=1,
        )
        chosen = torch.rand(n_tasks, len(self.classes), generator=generator).topk(n_way, dim=1).indices
        days = picks.gather(1, chosen[..., None].expand(-1, -1, m))  # [T, n_way, m]
        x = self.x[days]
        labels = torch.arange(n_way)
        return Episode(
            x_support=x[:, :, :k].flatten(1, 2),
            y_support=labels.repeat_interleave(k).repeat(n_tasks, 1),
            x_query=x[:, :, k:].flatten(1, 2),
            y_query=labels.repeat_interleave(self.n_query).repeat(n_tasks, 1),
            meta={"n_way": n_way, "classes": torch.tensor(self.classes)[chosen]},
        )


class ProfileEncoder(nn.Module):
    """The embedding: a small 1-D conv net over day profiles, ``[N, B] -> [N, out]`` (B divisible by 4).

    Two stages of conv (kernel 5) + ReLU + max-pool (2), then a linear map of
    the flattened features: no global pooling, so where in the day a drop
    happens is kept. On METR-LA it beat an MLP 96-128-128-64 (1-shot
    held-out-sensor accuracy about 0.85 against 0.79).
    """

    def __init__(self, n_bins: int, channels: tuple[int, int] = (16, 32), out: int = 64) -> None:
        super().__init__()
        if n_bins % 4:
            raise ConfigError(f"ProfileEncoder: the number of bins must be divisible by 4, got {n_bins}")
        first, second = channels
        self.net = nn.Sequential(
            nn.Conv1d(1, first, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(first, second, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Flatten(),
            nn.Linear(second * (n_bins // 4), out),
        )

    def forward(self, profiles: torch.Tensor) -> torch.Tensor:
        return self.net(profiles[:, None, :])


def train_protonet(
    days: SensorDays,
    *,
    seed: int = 0,
    steps: int = 500,
    k_shot: int = 5,
    n_query: int = 5,
    meta_batch: int = 16,
    progress: bool = False,
    device: torch.device | str = "cpu",
) -> tuple[MetaLearner, dict[str, Any]]:
    """Meta-train ProtoNet on ``device`` on ``days`` (split 80/20 by sensor into train/val); returns it and a
    summary.

    Each split's episodes hold every pattern with ``k_shot + n_query`` days in
    it. The summary holds those patterns, training seconds and the val
    accuracy (200 episodes, mean and 95% interval).
    """
    x = torch.from_numpy(days.filled())
    labels = torch.from_numpy(days.labels())
    splits = sensor_splits(days.sensor, make_generator(seed))
    family = PatternEpisodes(x, labels, splits, k_shot=k_shot, n_query=n_query)
    with seeded(seed):  # the encoder's initial weights
        learner = make_learner("protonet", ProfileEncoder(x.shape[1])).to(device)
    config = TrainConfig(
        steps=steps,
        meta_batch=meta_batch,
        lr=1e-3,
        seed=seed,
        log_every=max(steps, 1),
        checkpoint_every=0,
        progress=progress,
    )
    result = meta_train(learner, family, config)
    score = evaluate_learner(learner, family.split("val"), n_tasks=200, seed=seed + 1)
    return learner, {
        "classes": {split: [PATTERNS[c] for c in family.split(split).classes] for split in splits},
        "steps": steps,
        "seconds": result.seconds,
        "val_accuracy": {"mean": score.mean, "ci95": score.ci95, "episodes": score.n_tasks},
    }


def sensor_splits(sensor: np.ndarray, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Sensor-day indices of a random 80% (train) and 20% (val) of the sensors."""
    ids = np.unique(sensor)
    if ids.size < 2:
        raise DataError(
            f"the source needs at least 2 sensors with whole days to split into train and val; got {ids.size}"
        )
    order = ids[torch.randperm(ids.size, generator=generator).numpy()]
    n_val = max(1, round(VAL_FRACTION * ids.size))
    val = np.isin(sensor, order[:n_val])
    return {"train": torch.from_numpy(np.flatnonzero(~val)), "val": torch.from_numpy(np.flatnonzero(val))}


def _named_counts(counts: torch.Tensor | np.ndarray) -> dict[str, int]:
    return {name: int(n) for name, n in zip(PATTERNS, counts)}


def class_counts(days: SensorDays) -> dict[str, int]:
    """Number of sensor-days of each pattern, by name."""
    return _named_counts(np.bincount(days.labels(), minlength=len(PATTERNS)))


def assign(
    learner: MetaLearner, x: torch.Tensor, support: torch.Tensor, support_y: torch.Tensor, query: torch.Tensor
) -> torch.Tensor:
    """Labels ``int64 [Q]`` of days ``x[query]`` from the ProtoNet adapted to ``x[support]`` (labels ``0..C-1``).

    ``x [D, F]``; ``support``, ``query`` are int64 day indices. The days are moved to the learner's device;
    the labels come back on the CPU.
    """
    device = module_device(learner, default=x.device)
    with torch.no_grad():
        adapted = learner.adapt(x[support][None].to(device), support_y[None].to(device))
        return adapted.predict(x[query][None].to(device))[0].argmax(-1).cpu()


def nearest_neighbour(
    x: torch.Tensor, support: torch.Tensor, support_y: torch.Tensor, query: torch.Tensor
) -> torch.Tensor:
    """Labels ``int64 [Q]``: the label of the nearest (Euclidean) support day of each query day."""
    return support_y[torch.cdist(x[query], x[support]).argmin(1)]


def few_shot_scores(
    learner: MetaLearner,
    x: torch.Tensor,
    labels: torch.Tensor,
    classes: Mapping[int, Sequence[int]],
    draws: int,
    generator: torch.Generator,
) -> dict[str, dict[str, dict[str, float]]]:
    """Accuracy of ProtoNet and the two raw-profile baselines, by K, over ``draws`` random labelled sets.

    ``x [D, B]`` target profiles, ``labels int64 [D]`` their rule patterns;
    ``classes`` maps each K to the patterns scored with K labelled days (see
    :func:`target_classes`); only days of those patterns take part. Returns
    ``{str(K): {method: {mean, ci95, balanced_mean, balanced_ci95}}}``. At
    K = 1 nearest centroid and 1-NN are the same method.
    """
    centroid = make_learner("protonet", nn.Identity())  # ProtoNet on the raw profile = nearest centroid
    methods = {
        "protonet": lambda s, y, q: assign(learner, x, s, y, q),
        "nearest_centroid": lambda s, y, q: assign(centroid, x, s, y, q),
        "knn1": lambda s, y, q: nearest_neighbour(x, s, y, q),
    }
    scores = {}
    for k, patterns in classes.items():
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in methods}
        for _ in range(draws):
            support, support_y, query, query_y = _draw(labels, patterns, k, generator)
            for name, method in methods.items():
                runs[name].append(_accuracies(method(support, support_y, query), query_y, len(patterns)))
        scores[str(k)] = {name: _summary(values) for name, values in runs.items()}
    return scores


def _draw(labels: torch.Tensor, classes: Sequence[int], k: int, generator: torch.Generator):
    """``k`` random labelled days per class (support, labels 0..C-1) and all other days of the classes (query)."""
    support, support_y, query, query_y = [], [], [], []
    for position, c in enumerate(classes):
        days = (labels == c).nonzero().squeeze(1)
        if days.numel() <= k:
            raise DataError(f"pattern {PATTERNS[c]!r} has {days.numel()} days; {k} labelled ones need at least {k + 1}")
        days = days[torch.randperm(days.numel(), generator=generator)]
        support.append(days[:k])
        query.append(days[k:])
        support_y.append(torch.full((k,), position))
        query_y.append(torch.full((days.numel() - k,), position))
    return torch.cat(support), torch.cat(support_y), torch.cat(query), torch.cat(query_y)


def _accuracies(predicted: torch.Tensor, truth: torch.Tensor, n_classes: int) -> tuple[float, float]:
    """Accuracy and balanced accuracy (mean recall over the classes) in [0, 1]."""
    correct = (predicted == truth).double()
    recall = [float(correct[truth == c].mean()) for c in range(n_classes)]
    return float(correct.mean()), float(np.mean(recall))


def _summary(values: list[tuple[float, float]]) -> dict[str, float]:
    accuracy, balanced = zip(*values)
    mean, ci = mean_ci95(accuracy)
    balanced_mean, balanced_ci = mean_ci95(balanced)
    return {"mean": mean, "ci95": ci, "balanced_mean": balanced_mean, "balanced_ci95": balanced_ci}


def target_classes(labels: np.ndarray, k: int) -> tuple[int, ...]:
    """Patterns with at least ``k + MIN_QUERY`` of the target's days (``labels int64 [D]``).

    Raises DataError naming the counts when fewer than 2 patterns qualify.
    """
    counts = np.bincount(labels, minlength=len(PATTERNS))
    classes = tuple(c for c in range(len(PATTERNS)) if counts[c] >= k + MIN_QUERY)
    if len(classes) < 2:
        raise DataError(
            f"the target needs at least 2 patterns with {k + MIN_QUERY} sensor-days each ({k} labelled + "
            f"{MIN_QUERY} to assign); got {_named_counts(counts)}"
        )
    return classes


def sensor_patterns(day_patterns: np.ndarray, sensor: np.ndarray, n_sensors: int) -> np.ndarray:
    """Majority pattern of each sensor over its days: ``int64 [n_sensors]``, -1 for a sensor without days.

    ``day_patterns``, ``sensor``: ``int64 [D]``; ties go to the lower pattern index.
    """
    votes = np.zeros((n_sensors, len(PATTERNS)), dtype=np.int64)
    np.add.at(votes, (sensor, day_patterns), 1)
    return np.where(votes.sum(1) > 0, votes.argmax(1), -1)


def plot_prototypes(
    profiles: np.ndarray, assigned: np.ndarray, rule: np.ndarray, classes: Sequence[int], path: Path, title: str
) -> None:
    """Grid of panels, one per pattern: mean and interquartile band of the days assigned to its prototype,
    with the mean of the days the rule gives it (dashed). ``profiles [D, B]``; ``assigned``, ``rule`` ``int64 [D]``.
    """
    plt = pyplot()
    cols = min(3, len(classes))
    rows = -(-len(classes) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), sharex=True, sharey=True, squeeze=False)
    hours = np.arange(profiles.shape[1]) * 24.0 / profiles.shape[1]
    for ax, c in zip(axes.flat, classes):
        mine = profiles[assigned == c]
        if len(mine):
            low, high = np.percentile(mine, [25, 75], axis=0)
            ax.fill_between(hours, low, high, color=_colour(c), alpha=0.3, label="assigned: 25-75%")
            ax.plot(hours, mine.mean(0), color=_colour(c), label="assigned: mean")
        if (rule == c).any():
            ax.plot(hours, profiles[rule == c].mean(0), "k--", lw=1, label="rule label: mean")
        ax.set_title(f"{PATTERNS[c]} ({len(mine)} days)")
        ax.axhline(CONGESTED, color="grey", lw=0.5)
        ax.set_xticks(range(0, 25, 6))
    for ax in list(axes.flat)[len(classes) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("hour of day")
    for ax in axes[:, 0]:
        ax.set_ylabel("speed / free flow")
    axes.flat[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, path)


def plot_sensor_map(coords: np.ndarray, patterns: np.ndarray, path: Path, title: str) -> None:
    """Scatter of sensors at ``coords [N, 2]`` (lat, lon in degrees) coloured by ``patterns int64 [N]`` (-1: none)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    for c in np.unique(patterns):
        at = patterns == c
        name, colour = ("no whole day", "lightgrey") if c < 0 else (PATTERNS[c], _colour(c))
        ax.scatter(coords[at, 1], coords[at, 0], s=18, color=colour, label=f"{name} ({int(at.sum())})")
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)


def _colour(pattern: int) -> str:
    return f"C{pattern}"


def run_patterns(
    source: TrafficData,
    target: TrafficData,
    out_dir: Path,
    *,
    seed: int = 0,
    steps: int = 500,
    shots: Sequence[int] = (1, 5),
    draws: int = 100,
    progress: bool = False,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Meta-train on ``source`` sensor-days, sort ``target`` sensor-days from K labelled ones per pattern.

    Writes ``prototypes.png``, ``sensor_map.png`` (only when the target has
    coordinates) and ``patterns.json`` into ``out_dir``; returns the same
    JSON-able dict: class counts, ProtoNet and baseline accuracies by K (mean
    and 95% interval over ``draws``), each target sensor's majority pattern,
    plot paths, notes and seconds. See the module docstring for the protocol.

    With K labelled days, the patterns scored are those with ``K + MIN_QUERY``
    target days (so a larger K may score fewer patterns). The prototype plot
    and the sensors' majority patterns come from one draw at the largest K. ProtoNet runs on ``device``.
    """
    if not shots or min(shots) < 1:
        raise ConfigError(f"run_patterns: shots must be labelled days per pattern, each >= 1; got {tuple(shots)}")
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source_days, target_days = sensor_days(source), sensor_days(target)
    rule = target_days.labels()
    classes = {k: target_classes(rule, k) for k in shots}
    learner, training = train_protonet(source_days, seed=seed, steps=steps, progress=progress, device=device)
    x = torch.from_numpy(target_days.filled())
    labels = torch.from_numpy(rule)
    generator = make_generator(seed + 2)
    accuracy = few_shot_scores(learner, x, labels, classes, draws, generator)
    k = max(shots)
    assigned = _assign_all(learner, x, labels, classes[k], k, generator)
    majority, sensors = _sensor_summary(target, target_days.sensor, assigned, rule)
    plots, notes = _plots(target, x.numpy(), assigned, rule, classes[k], majority, out_dir, k)
    result = {
        "source": source.name,
        "target": target.name,
        "seed": seed,
        "labels": "weak: the rule of metamap.traffic.patterns.label_profiles, not ground truth",
        "class_counts": {"source": class_counts(source_days), "target": class_counts(target_days)},
        "sensor_days": {"source": len(source_days), "target": len(target_days)},
        "target_classes": {str(k): [PATTERNS[c] for c in patterns] for k, patterns in classes.items()},
        "unscored_target_days": {str(k): int((~np.isin(rule, patterns)).sum()) for k, patterns in classes.items()},
        "training": training,
        "shots": list(shots),
        "draws": draws,
        "accuracy": accuracy,
        "sensor_majority": sensors,
        "plots": plots,
        "notes": notes,
        "seconds": time.perf_counter() - t0,
    }
    write_json(out_dir / "patterns.json", result)
    return result


def _assign_all(
    learner: MetaLearner,
    x: torch.Tensor,
    labels: torch.Tensor,
    classes: Sequence[int],
    k: int,
    generator: torch.Generator,
) -> np.ndarray:
    """Pattern index ``int64 [D]`` of every target day from one draw of ``k`` labelled days per class."""
    support, support_y, _, _ = _draw(labels, classes, k, generator)
    position = assign(learner, x, support, support_y, torch.arange(x.shape[0]))
    return np.asarray(classes, dtype=np.int64)[position.numpy()]


def _sensor_summary(
    target: TrafficData, sensor: np.ndarray, assigned: np.ndarray, rule: np.ndarray
) -> tuple[np.ndarray, dict[str, Any]]:
    """Majority pattern ``int64 [N]`` of each target sensor, and its JSON summary.

    The summary holds the agreement with the rule's majority and each sensor's pattern name.
    """
    majority = sensor_patterns(assigned, sensor, target.n_sensors)
    rule_majority = sensor_patterns(rule, sensor, target.n_sensors)
    has_days = majority >= 0
    return majority, {
        "agreement_with_rule": float((majority == rule_majority)[has_days].mean()),
        "patterns": {target.sensor_ids[i]: PATTERNS[p] for i, p in enumerate(majority) if p >= 0},
    }


def _plots(
    target: TrafficData,
    profiles: np.ndarray,
    assigned: np.ndarray,
    rule: np.ndarray,
    classes: Sequence[int],
    majority: np.ndarray,
    out_dir: Path,
    k: int,
) -> tuple[dict[str, str | None], list[str]]:
    """Draw the prototype grid and, where the target has coordinates, the sensor map; returns paths and notes."""
    plots: dict[str, str | None] = {"prototypes": str(out_dir / "prototypes.png"), "map": None}
    plot_prototypes(
        profiles,
        assigned,
        rule,
        classes,
        Path(plots["prototypes"]),
        f"{target.name}: days nearest each prototype ({k} labelled per pattern)",
    )
    if target.coords is None:
        return plots, [f"target {target.name!r} has no sensor coordinates: no map drawn"]
    plots["map"] = str(out_dir / "sensor_map.png")
    plot_sensor_map(target.coords, majority, Path(plots["map"]), f"{target.name}: majority pattern per sensor")
    return plots, []
