"""One loop for every model the package trains: a step function run for N steps or T seconds.

:class:`Trainer` owns what every training run needs besides its step: the
budget (``steps``, and ``max_seconds`` of wall time that a resumed run
counts from its start), the progress bar, a clean interrupt, periodic
atomic checkpoints through :mod:`metamap.training.checkpoint`, exact resume
and the metrics log. The step itself (a meta-step, a diffusion step, a
minibatch of least squares) and what it records are the caller's.

Interrupt: the first Ctrl-C (SIGINT) or SIGTERM lets the current step
finish, writes a checkpoint (when there is a run folder) and raises
:class:`~metamap.errors.TrainingInterrupted`, so that a command with several
stages stops as a whole; a second one stops at once (KeyboardInterrupt).

Exact resume: a checkpoint holds the module's state (weights and buffers),
the optimizer's state, the state of every generator in ``generators``, the
step, the training seconds so far (``extra["train_seconds"]``) and the
caller's own ``extra`` state (JSON), so a run stopped and resumed gives the
same numbers as one that never stopped. Only a clean stop (the budget is
spent, or an interrupt between steps) saves at the end: an error mid-step
leaves the last periodic checkpoint as the state to resume from.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from torch import nn

from metamap.errors import CheckpointError, ConfigError, TrainingInterrupted
from metamap.progress import progress_bar
from metamap.training.checkpoint import latest_checkpoint, load_checkpoint, load_learner_state, save_checkpoint
from metamap.training.metrics_log import MetricsLog

SECONDS_KEY = "train_seconds"  # the checkpoint's ``extra`` entry holding the training seconds so far

StepFn = Callable[[int], float]
"""Takes the optimizer step number ``step`` (0 for the first step of a fresh run); returns its loss."""
RecordFn = Callable[[int, float], dict[str, Any] | None]
"""Called after each step with the steps done so far and that step's loss; returns the values to log
(numbers by name, without ``step``) or None when this step logs nothing."""


@dataclass
class TrainResult:
    """What :meth:`Trainer.run` did.

    ``steps_done`` steps in ``seconds`` (wall clock) in this call;
    ``final_step`` and ``total_seconds`` count the runs before a resume too;
    ``history`` holds every logged record (``{"step": ..., **values}``), the
    earlier runs' records included when there is a run folder.
    """

    steps_done: int
    seconds: float
    history: list[dict[str, Any]]
    final_step: int
    total_seconds: float


class StopFlag:
    """Turns the first SIGINT/SIGTERM into a request to stop after the current step; the second aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


class Trainer:
    """Runs a step function until ``steps`` steps are done or ``max_seconds`` have passed.

    Args:
        module: everything trained and saved (a learner, or a ModuleDict of a
            network and its EMA copy).
        optimizer: its optimizer, saved with it; None when there is nothing
            to save besides the module.
        steps: the step to stop at (a resumed run continues up to it).
        max_seconds: wall-clock budget in seconds over all runs of a resumed
            training: it stops, with a checkpoint, after the first step that
            exceeds it. None: no time budget.
        generators: the generators whose states decide the next numbers, by
            the name they are saved under (``torch.default_generator`` for
            torch's global one).
        run_dir: where checkpoints and the metrics log go; None writes nothing.
        config: stored in every checkpoint (what a resume is checked against).
        checkpoint_every: a checkpoint every this many steps (0: only at the
            end), besides the one at a clean stop.
        keep_checkpoints: how many checkpoints to keep (all when < 1).
        extra: returns the caller's own state to save (JSON) at each checkpoint.
        progress: show a progress bar (see :func:`metamap.progress.progress_bar`).
        desc: what the bar counts (``"meta-train"``).
        leave: keep the terminal bar on screen once closed.
    """

    def __init__(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        *,
        steps: int,
        max_seconds: float | None = None,
        generators: Mapping[str, torch.Generator] | None = None,
        run_dir: Path | None = None,
        config: dict[str, Any] | None = None,
        checkpoint_every: int = 0,
        keep_checkpoints: int = 2,
        extra: Callable[[], dict[str, Any]] | None = None,
        progress: bool = True,
        desc: str = "training",
        leave: bool = True,
    ) -> None:
        if steps < 0 or checkpoint_every < 0:
            raise ConfigError(
                f"Trainer: expected steps >= 0 and checkpoint_every >= 0; got {steps}, {checkpoint_every}"
            )
        if max_seconds is not None and max_seconds <= 0:
            raise ConfigError(f"Trainer: max_seconds must be > 0 (a time budget), got {max_seconds}")
        self.module = module
        self.optimizer = optimizer
        self.steps = steps
        self.max_seconds = max_seconds
        self.generators = dict(generators or {})
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.config = config or {}
        self.checkpoint_every = checkpoint_every
        self.keep_checkpoints = keep_checkpoints
        self.extra = extra
        self.progress = progress
        self.desc = desc
        self.leave = leave
        self.step = 0  # steps done, the resumed ones included
        self.earlier_seconds = 0.0  # training seconds of the runs before a resume
        self._resumed = False

    def resume(
        self, folder: Path, check: Callable[[dict[str, Any], Path], None] | None = None
    ) -> dict[str, Any] | None:
        """Load the latest checkpoint of the run folder ``folder`` into the module, optimizer and generators.

        ``check(config, checkpoint_folder)`` sees the saved ``config`` first
        and raises CheckpointError when the run cannot be continued with
        this one. Returns the caller's ``extra`` state saved with it, or None
        when ``folder`` holds no checkpoint yet (the run starts at step 0).
        Either way the metrics log of ``run_dir`` is kept up to this step
        rather than started afresh.
        """
        self._resumed = True
        latest = latest_checkpoint(Path(folder))
        if latest is None:
            return None
        checkpoint = load_checkpoint(latest)
        if check is not None:
            check(checkpoint.config, latest)
        load_learner_state(self.module, checkpoint, source=str(latest))
        missing = sorted(set(self.generators) - set(checkpoint.generators))
        if missing:
            raise CheckpointError(f"{latest}: expected the random-generator states {missing} for an exact resume")
        try:
            if self.optimizer is not None and checkpoint.optimizer_state is not None:
                self.optimizer.load_state_dict(checkpoint.optimizer_state)
            for name, generator in self.generators.items():
                generator.set_state(checkpoint.generators[name])
            seconds = float(checkpoint.extra.get(SECONDS_KEY, 0.0))
        except (ValueError, TypeError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{latest}: its optimizer or generator state does not fit this run ({exc})") from None
        self.step, self.earlier_seconds = checkpoint.step, seconds
        return {key: value for key, value in checkpoint.extra.items() if key != SECONDS_KEY}

    def run(self, step: StepFn, record: RecordFn | None = None) -> TrainResult:
        """Call ``step`` until the budget is spent, logging what ``record`` returns; see the module notes.

        Raises TrainingInterrupted (after saving) when a signal stopped the
        run before ``steps``; errors of ``step`` pass through unsaved.
        """
        log = None
        if self.run_dir is not None:
            log = MetricsLog(self.run_dir, resume_step=self.step if self._resumed else None)
        history: list[dict[str, Any]] = log.records() if log else []
        bar = progress_bar(  # a time-budgeted run has no meaningful step total to show
            total=self.steps if self.max_seconds is None else None,
            initial=self.step,
            enabled=self.progress,
            desc=self.desc,
            leave=self.leave,
        )
        start = self.step
        t0 = time.perf_counter()
        completed = False
        try:
            with StopFlag() as stop:
                while self.step < self.steps and not stop.requested and not self._over_budget(t0):
                    loss = step(self.step)
                    self.step += 1
                    bar.update(1)
                    values = record(self.step, loss) if record is not None else None
                    if values is not None:
                        bar.set_postfix({key: f"{value:.4g}" for key, value in values.items()})
                        history.append({"step": self.step, **values})
                        if log:
                            log.log(self.step, values)
                    if self.checkpoint_every and self.step % self.checkpoint_every == 0:
                        self._save(self.earlier_seconds + time.perf_counter() - t0)
                interrupted = stop.requested and self.step < self.steps
            completed = True
        finally:
            bar.close()
            if log:
                log.close()
        seconds = time.perf_counter() - t0
        if completed:
            self._save(self.earlier_seconds + seconds)
        if interrupted:
            where = f"; checkpoint saved in {self.run_dir}, resume to go on" if self.run_dir is not None else ""
            raise TrainingInterrupted(f"training interrupted at step {self.step}{where}")
        return TrainResult(self.step - start, seconds, history, self.step, self.earlier_seconds + seconds)

    def _over_budget(self, t0: float) -> bool:
        elapsed = self.earlier_seconds + time.perf_counter() - t0
        return self.max_seconds is not None and elapsed > self.max_seconds

    def _save(self, seconds: float) -> None:
        if self.run_dir is None:
            return
        save_checkpoint(
            self.run_dir,
            self.step,
            self.config,
            self.module,
            self.optimizer,
            generators={name: generator.get_state() for name, generator in self.generators.items()},
            extra={SECONDS_KEY: seconds, **(self.extra() if self.extra is not None else {})},
            keep=self.keep_checkpoints,
        )
