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
from metamap.traffic.patterns.days import class_counts, sensor_days
from metamap.traffic.patterns.encoder import train_protonet
from metamap.traffic.patterns.labels import PATTERNS
from metamap.traffic.patterns.plots import draw_plots
from metamap.traffic.patterns.scoring import assign, draw_labelled, few_shot_scores, sensor_patterns, target_classes


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
    plots, notes = draw_plots(target, x.numpy(), assigned, rule, classes[k], majority, out_dir, k)
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
    support, support_y, _, _ = draw_labelled(labels, classes, k, generator)
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
