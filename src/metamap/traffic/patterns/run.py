"""The patterns run end to end: meta-train on the source city, sort the target city's sensor-days, write it all."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metamap.errors import ConfigError
from metamap.learners.base import MetaLearner
from metamap.report import write_json
from metamap.tasks.family import make_generator
from metamap.traffic.data import TrafficData
from metamap.traffic.patterns.clusters import ProfileClusters
from metamap.traffic.patterns.days import SensorDays, class_counts, default_bin_minutes, sensor_days
from metamap.traffic.patterns.encoder import train_protonet
from metamap.traffic.patterns.labels import Labelling, SpeedRule
from metamap.traffic.patterns.plots import draw_plots
from metamap.traffic.patterns.scoring import assign, draw_labelled, few_shot_scores, sensor_patterns, target_classes

LABELS = ("auto", "rule", "clusters")


def run_patterns(
    source: TrafficData,
    target: TrafficData,
    out_dir: Path,
    *,
    seed: int = 0,
    steps: int = 500,
    shots: Sequence[int] = (1, 5),
    draws: int = 100,
    labels: str | Labelling = "auto",
    bin_minutes: int | None = None,
    progress: bool = False,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Meta-train on ``source`` sensor-days, sort ``target`` sensor-days from K labelled ones per pattern.

    Writes ``prototypes.png``, ``sensor_map.png`` (only when the target has
    coordinates) and ``patterns.json`` into ``out_dir``; returns the same
    JSON-able dict: class counts, ProtoNet and baseline accuracies by K (mean
    and 95% interval over ``draws``), each target sensor's majority pattern,
    plot paths, notes and seconds. See the module docstring for the protocol.

    ``labels`` picks the weak labels: one of :data:`LABELS` (the speed rule, clusters of the source's
    profiles, or ``auto``: clusters where either city's readings are counts (non-negative integers),
    the speed rule otherwise), or a user's own rule, any object of the
    :class:`~metamap.traffic.patterns.labels.Labelling` protocol. ``bin_minutes``: the profile bin (default 15 min, or the data's step).

    With K labelled days, the patterns scored are those with ``K + MIN_QUERY``
    target days (so a larger K may score fewer patterns). The prototype plot
    and the sensors' majority patterns come from one draw at the largest K. ProtoNet runs on ``device``.
    """
    if not shots or min(shots) < 1:
        raise ConfigError(f"run_patterns: shots must be labelled days per pattern, each >= 1; got {tuple(shots)}")
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(labels, str) and labels not in LABELS:
        raise ConfigError(f"--labels: expected one of {', '.join(LABELS)}, got {labels!r}")
    if bin_minutes is None:  # one bin for both cities, so that their profiles have the same length
        bin_minutes = max(default_bin_minutes(source.step_minutes), default_bin_minutes(target.step_minutes))
    source_days = sensor_days(source, bin_minutes=bin_minutes)
    target_days = sensor_days(target, bin_minutes=bin_minutes)
    labelling = _labelling(labels, source, target, source_days, seed)
    weak = labelling.label(target_days.profiles)
    classes = {k: target_classes(weak, k, labelling.names) for k in shots}
    learner, training = train_protonet(source_days, labelling, seed=seed, steps=steps, progress=progress, device=device)
    x = torch.from_numpy(target_days.filled())
    generator = make_generator(seed + 2)
    accuracy = few_shot_scores(learner, x, torch.from_numpy(weak), classes, draws, generator)
    k = max(shots)
    assigned = _assign_all(learner, x, torch.from_numpy(weak), classes[k], k, generator)
    majority, sensors = _sensor_summary(target, target_days.sensor, assigned, weak, labelling.names)
    plots, notes = draw_plots(target, x.numpy(), assigned, weak, classes[k], majority, out_dir, k, labelling)
    if source.holds_counts != target.holds_counts:
        kinds = {True: "counts", False: "not counts"}
        notes.append(
            f"the source's readings are {kinds[source.holds_counts]}, the target's {kinds[target.holds_counts]}: "
            "patterns learned on one kind of reading may not describe the other"
        )
    result = {
        "source": source.name,
        "target": target.name,
        "seed": seed,
        "labels": labelling.summary(),
        "bin_minutes": bin_minutes,
        "class_counts": {
            "source": class_counts(labelling.label(source_days.profiles), labelling),
            "target": class_counts(weak, labelling),
        },
        "sensor_days": {"source": len(source_days), "target": len(target_days)},
        "target_classes": {str(k): [labelling.names[c] for c in patterns] for k, patterns in classes.items()},
        "unscored_target_days": {str(k): int((~np.isin(weak, patterns)).sum()) for k, patterns in classes.items()},
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
    support, support_y, _, _ = draw_labelled(labels, classes, k, generator)
    position = assign(learner, x, support, support_y, torch.arange(x.shape[0]))
    return np.asarray(classes, dtype=np.int64)[position.numpy()]


def _labelling(
    kind: str | Labelling, source: TrafficData, target: TrafficData, days: SensorDays, seed: int
) -> Labelling:
    """The weak labels of ``kind`` (see :func:`run_patterns`); clusters are fitted on the source's ``days``."""
    if not isinstance(kind, str):
        return kind
    if kind == "auto":
        kind = "clusters" if source.holds_counts or target.holds_counts else "rule"
    return SpeedRule() if kind == "rule" else ProfileClusters.fit(days.filled(), seed=seed)


def _sensor_summary(
    target: TrafficData, sensor: np.ndarray, assigned: np.ndarray, weak: np.ndarray, names: Sequence[str]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Majority pattern ``int64 [N]`` of each target sensor, and its JSON summary.

    The summary holds the agreement with the weak labels' majority and each sensor's pattern name.
    """
    majority = sensor_patterns(assigned, sensor, target.n_sensors)
    weak_majority = sensor_patterns(weak, sensor, target.n_sensors)
    has_days = majority >= 0
    return majority, {
        "agreement_with_weak_labels": float((majority == weak_majority)[has_days].mean()),
        "patterns": {target.sensor_ids[i]: names[p] for i, p in enumerate(majority) if p >= 0},
    }
