"""The profile embedding and ProtoNet's meta-training on one city's sensor-days."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from metamap.errors import ConfigError
from metamap.learners import make_learner
from metamap.learners.base import MetaLearner
from metamap.seeding import seeded
from metamap.tasks.family import make_generator
from metamap.traffic.patterns.days import SensorDays
from metamap.traffic.patterns.episodes import PatternEpisodes, sensor_splits
from metamap.traffic.patterns.labels import Labelling
from metamap.training import TrainConfig, evaluate_learner, meta_train


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
    labelling: Labelling,
    *,
    seed: int = 0,
    steps: int = 500,
    k_shot: int = 5,
    n_query: int = 5,
    meta_batch: int = 16,
    progress: bool = False,
    device: torch.device | str = "cpu",
) -> tuple[MetaLearner, dict[str, Any]]:
    """Meta-train ProtoNet on ``device`` on ``days`` labelled by ``labelling`` (split 80/20 by sensor into
    train/val); returns it and a summary.

    Each split's episodes hold every pattern with ``k_shot + n_query`` days in
    it. The summary holds those patterns, training seconds and the val
    accuracy (200 episodes, mean and 95% interval).
    """
    x = torch.from_numpy(days.filled())
    labels = torch.from_numpy(labelling.label(days.profiles))
    splits = sensor_splits(days.sensor, make_generator(seed))
    family = PatternEpisodes(x, labels, splits, k_shot=k_shot, n_query=n_query, names=labelling.names)
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
        "classes": {split: [labelling.names[c] for c in family.split(split).classes] for split in splits},
        "steps": steps,
        "seconds": result.seconds,
        "val_accuracy": {"mean": score.mean, "ci95": score.ci95, "episodes": score.n_tasks},
    }
