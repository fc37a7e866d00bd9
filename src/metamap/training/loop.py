"""Meta-training: periodic validation and the learner's meta-step, run by the trainer; torchrun.

The budget, progress, interrupt (Ctrl-C or SIGTERM finishes the current
step, saves and raises :class:`~metamap.errors.TrainingInterrupted`),
checkpoints and exact resume come from :class:`~metamap.training.trainer.Trainer`;
everything that decides the next numbers (weights, optimizer state, the
task sampler's generator, torch's global generator, the step) is in the
checkpoint, so a run stopped and resumed gives the same numbers as one that
never stopped.

Multi-process (``torchrun``): every rank draws the same meta-batch from the
same generator and keeps its own contiguous block of tasks
(:meth:`Episode.shard`); meta-gradients are averaged with an all-reduce, so
every rank takes the same optimizer step and the result equals one process
with the same total meta-batch. Only rank 0 writes files and shows progress.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from metamap.errors import CheckpointError, ConfigError, DataError
from metamap.learners.base import MetaLearner
from metamap.nn.devices import module_device
from metamap.tasks.episode import Episode
from metamap.tasks.family import TaskFamily, make_generator
from metamap.training.evaluate import evaluate_learner
from metamap.training.run_folder import claim_run_folder
from metamap.training.trainer import Trainer, TrainResult


@dataclass(frozen=True)
class TrainConfig:
    """Meta-training settings.

    ``meta_batch`` tasks per meta-step; ``lr`` of the outer Adam (or SGD for
    ``optimizer="sgd"``); validation on ``val_tasks`` tasks every ``val_every``
    steps; a checkpoint every ``checkpoint_every`` steps and at the end.
    ``max_seconds`` is a wall-clock budget for the whole run (resumed runs
    count the time before the interruption): training stops, with a
    checkpoint, after the first step that exceeds it.
    """

    steps: int = 1000
    meta_batch: int = 25
    lr: float = 1e-3
    optimizer: str = "adam"
    seed: int = 0
    val_every: int = 0
    val_tasks: int = 100
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    grad_clip: float | None = None
    progress: bool = True
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.steps < 0 or self.meta_batch < 1 or self.lr <= 0:
            raise ConfigError(
                f"TrainConfig: expected steps >= 0, meta_batch >= 1, lr > 0; "
                f"got steps={self.steps}, meta_batch={self.meta_batch}, lr={self.lr}"
            )
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ConfigError(f"TrainConfig: max_seconds must be > 0 (a time budget), got {self.max_seconds}")
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; expected 'adam' or 'sgd'")


def make_optimizer(learner: MetaLearner, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(learner.parameters(), lr=config.lr)
    return torch.optim.Adam(learner.parameters(), lr=config.lr)


def meta_train(
    learner: MetaLearner,
    family: TaskFamily,
    config: TrainConfig,
    run_dir: Path | None = None,
    run_config: dict[str, Any] | None = None,
    resume: bool = False,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Meta-train ``learner`` on ``family.split('train')``, validating on ``family.split('val')``.

    ``run_dir`` receives checkpoints and metrics (none are written when it is
    None); it is claimed for the run (:func:`claim_run_folder`: locked, and
    without ``resume`` it must be empty or new). ``run_config`` is stored in
    every checkpoint so that a run can be rebuilt and evaluated later, with
    the name of the learner's loss; a learner whose loss is a custom callable
    (no name) cannot be saved or resumed. ``resume`` continues from the
    latest checkpoint in ``run_dir``.
    """
    if run_dir is not None and learner.loss_name is None:
        raise ConfigError(
            "a run folder needs a loss with a name (mse, mae, huber, cross_entropy) to record; "
            f"this learner's loss is the callable {learner.loss!r}: train it without run_dir"
        )
    rank, world = _rank_world()
    if config.meta_batch % world:
        raise ConfigError(f"meta_batch {config.meta_batch} must be divisible by the {world} processes")
    owner = run_dir if rank == 0 else None  # only rank 0 claims and writes the run folder
    with claim_run_folder(owner, resume=resume, what="run folder") if owner is not None else nullcontext():
        return _meta_train(learner, family, config, run_dir, run_config, resume, on_step, rank, world)


def _meta_train(
    learner: MetaLearner,
    family: TaskFamily,
    config: TrainConfig,
    run_dir: Path | None,
    run_config: dict[str, Any] | None,
    resume: bool,
    on_step: Callable[[int, float], None] | None,
    rank: int,
    world: int,
) -> TrainResult:
    train_family, val_family = family.split("train"), family.split("val")
    optimizer = make_optimizer(learner, config)
    generator = make_generator(config.seed)  # tasks are drawn on the CPU, then moved to the learner's device
    device = module_device(learner)
    running: list[float] = []  # losses since the last logged record
    trainer = Trainer(
        learner,
        optimizer,
        steps=config.steps,
        max_seconds=config.max_seconds,
        generators={"sampler": generator, "torch": torch.default_generator},
        run_dir=run_dir if rank == 0 else None,  # only rank 0 writes files and shows progress
        config={"run": run_config or {}, "train": asdict(config), "loss": learner.loss_name},
        checkpoint_every=config.checkpoint_every,
        keep_checkpoints=config.keep_checkpoints,
        extra=lambda: {"running_losses": running},
        progress=config.progress and rank == 0,
        desc="meta-train",
    )
    if resume:
        if run_dir is None:
            raise ConfigError("resume needs a run folder")
        saved = trainer.resume(run_dir, lambda saved, folder: _check_resume(saved, folder, learner, run_config))
        running = [float(x) for x in (saved or {}).get("running_losses", [])]
    start = trainer.step

    def step(index: int) -> float:
        episode = train_family.sample(config.meta_batch, generator).to(device)
        if index == start:  # the family's episodes share one layout: the model is checked against it once
            learner.check(episode.x_support, episode.y_support)
        return _meta_step(learner, optimizer, episode.shard(rank, world), config, world)

    def record(steps_done: int, loss: float) -> dict[str, Any] | None:
        nonlocal running
        running.append(loss)
        if on_step is not None:
            on_step(steps_done, loss)
        values = _record(steps_done, running, learner, val_family, config)
        if values is not None:
            running = []
        return values

    return trainer.run(step, record)


def _meta_step(
    learner: MetaLearner, optimizer: torch.optim.Optimizer, episode: Episode, config: TrainConfig, world: int
) -> float:
    optimizer.zero_grad(set_to_none=False)
    loss = learner.meta_backward(episode)
    if world > 1:
        loss = _all_reduce_mean(learner, loss, world)
    if not math.isfinite(loss):
        raise DataError(f"meta-loss became {loss}; lower the learning rate (lr={config.lr}) or the inner learning rate")
    if config.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(learner.parameters(), config.grad_clip)
    optimizer.step()
    return loss


def _all_reduce_mean(learner: MetaLearner, loss: float, world: int) -> float:
    """Average gradients and the loss over processes (one flat buffer, one all-reduce)."""
    grads = [p.grad for p in learner.parameters() if p.grad is not None]
    scalar = torch.tensor([loss], dtype=grads[0].dtype, device=grads[0].device)
    flat = torch.cat([g.reshape(-1) for g in grads] + [scalar])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n
    return float(flat[-1])


def _record(
    step: int, running: list[float], learner: MetaLearner, val_family: TaskFamily, config: TrainConfig
) -> dict[str, Any] | None:
    """What to log after ``step`` steps: the mean of the ``running`` losses since the last record and, when
    validation is due, the validation score; None when nothing is due."""
    due_log = config.log_every and step % config.log_every == 0
    due_val = config.val_every and step % config.val_every == 0
    if not (due_log or due_val or step == config.steps):
        return None
    record: dict[str, Any] = {"train_loss": sum(running) / max(len(running), 1)}
    if due_val:
        score = evaluate_learner(learner, val_family, n_tasks=config.val_tasks, seed=config.seed + 1)
        record[f"val_{score.metric}"] = score.mean
    return record


def _check_resume(saved: dict[str, Any], folder: Path, learner: MetaLearner, run_config: dict[str, Any] | None) -> None:
    """CheckpointError unless the checkpoint ``folder`` was written by a run with ``run_config`` and
    ``learner``'s loss."""
    run_dir = folder.parent.parent
    saved_run = saved.get("run", {})
    if not isinstance(saved_run, dict):
        raise CheckpointError(f"{folder}: expected the run configuration to be an object, got {saved_run!r:.60}")
    if run_config is not None and saved_run and saved_run != run_config:
        changed = sorted(k for k in set(saved_run) | set(run_config) if saved_run.get(k) != run_config.get(k))
        raise CheckpointError(
            f"cannot resume {run_dir}: it was started with a different configuration (differs in {changed})"
        )
    saved_loss = saved.get("loss", learner.loss_name)  # checkpoints before loss names: not compared
    if saved_loss != learner.loss_name:
        raise CheckpointError(
            f"cannot resume {run_dir}: it was trained with loss {saved_loss!r}, this learner's loss is {learner.loss_name!r}"
        )


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
