"""Crash trials of run folders: SIGKILL at each write of a checkpoint save, then ``--resume``.

For every point of :data:`KILL_POINTS` (the :func:`~metamap.training.checkpoint.fault_point`
names in :func:`~metamap.training.checkpoint.save_checkpoint` and
:class:`~metamap.training.metrics_log.MetricsLog`), :func:`kill_point_trials`
runs a tiny ``metamap train`` (sinusoid, an 8-unit MLP, 6 steps, a checkpoint
every 2, on the CPU) in a child process that kills itself with SIGKILL at
that point, then the same command with ``--resume`` to the end, and compares
the result with a run never killed: the latest checkpoint's tensors file
byte for byte (weights, optimizer state, generator states), the metrics log
record for record, and that no temporary, lock or surplus checkpoint is
left. ``save:*`` points are hit by ordinary saves (``#3``: the save of step
6, the first that prunes), ``resave:*`` points by the second save of step 6
at the end of the run.

Child processes come from a fork server that has imported metamap and torch
once, so a trial costs a fraction of a second rather than an interpreter
start.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from metamap.training.checkpoint import FAULT_ENV, TENSORS, latest_checkpoint
from metamap.training.metrics_log import read_records

KILL_POINTS = (
    "save:tensors-written",
    "save:state-written",
    "save:renamed",
    "save:pointer-switched",
    "save:pointer-switched#3",
    "save:removing",
    "save:pruned#3",
    "resave:tensors-written",
    "resave:state-written",
    "resave:renamed",
    "resave:pointer-switched",
    "resave:removing",
    "resave:pruned",
    "metrics-written",
)
TRAIN_ARGS = (
    "train",
    "--family",
    "sinusoid",
    "--learner",
    "maml",
    "--hidden",
    "8",
    "--steps",
    "6",
    "--meta-batch",
    "2",
    "--checkpoint-every",
    "2",
    "--episodes",
    "0",
    "--seed",
    "0",
    "--device",
    "cpu",
    "--no-progress",
)
KEEP = 2  # TrainConfig's default keep_checkpoints, which metamap train uses
CHILD_TIMEOUT_S = 120.0
# What `metamap train` imports on its way (the fork server skips any that are missing)
_PRELOAD = [
    "metamap.cli",
    "metamap.recipes",
    "metamap.bench.faults",
    "metamap.traffic.commands",
    "metamap.geo.commands",
    "metamap.energy.commands",
    "metamap.astro.commands",
    "metamap.physics.commands",
    "torch._dynamo",
    "torch.utils.tensorboard",
    "tqdm",
]


def kill_point_trials(workdir: Path, points: tuple[str, ...] = KILL_POINTS) -> dict[str, Any]:
    """Run the crash trial of every point in ``points`` under ``workdir``; returns the tally.

    Returns ``{"kill_points_exact": n, "kill_points_total": m, "seconds": s,
    "points": {name: {"killed", "resumed", "tensors_exact", "log_exact",
    "clean", "exact"}}}``: ``killed`` the first run died by SIGKILL (the
    point was reached), ``resumed`` the ``--resume`` run exited 0,
    ``tensors_exact`` its final tensors file equals the uninterrupted run's
    byte for byte, ``log_exact`` so do the metrics records, ``clean`` no
    ``.tmp-*``, no lock and at most the kept checkpoints remain; ``exact``
    all of these. Each child's output is in ``workdir/<trial>.log``.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    context = _context()
    reference = workdir / "uninterrupted"
    code = _run(context, reference, None, resume=False)
    if code != 0:
        raise RuntimeError(f"the uninterrupted run failed (exit code {code}); see {reference}.log")
    expected = _outcome(reference)
    results: dict[str, dict[str, bool]] = {}
    for point in points:
        run = workdir / point.replace(":", "-").replace("#", "-")
        killed = _run(context, run, point, resume=False) == -signal.SIGKILL
        resumed = _run(context, run, None, resume=True) == 0
        got = _outcome(run) if resumed else None
        trial = {
            "killed": killed,
            "resumed": resumed,
            "tensors_exact": got is not None and got["tensors"] == expected["tensors"],
            "log_exact": got is not None and got["log"] == expected["log"],
            "clean": got is not None and got["clean"],
        }
        trial["exact"] = all(trial.values())
        results[point] = trial
    return {
        "kill_points_exact": sum(t["exact"] for t in results.values()),
        "kill_points_total": len(results),
        "seconds": round(time.perf_counter() - started, 2),
        "points": results,
    }


_Context = multiprocessing.context.ForkServerContext | multiprocessing.context.SpawnContext


def _context() -> _Context:
    if "forkserver" not in multiprocessing.get_all_start_methods():  # pragma: no cover - Windows
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    return context


def _run(context: _Context, run: Path, fault: str | None, *, resume: bool) -> int | None:
    """Exit code of ``metamap train ... --out run`` in a child (-9 when killed); None when it hung."""
    argv = [*TRAIN_ARGS, "--out", str(run), *(["--resume"] if resume else [])]
    child = context.Process(target=_child, args=(argv, fault, str(run) + ".log"), daemon=True)
    child.start()
    child.join(CHILD_TIMEOUT_S)
    if child.is_alive():
        child.kill()
        child.join()
        return None
    return child.exitcode


def _child(argv: list[str], fault: str | None, log: str) -> None:
    import threading

    import torch
    from tqdm import tqdm

    from metamap.cli import main

    tqdm.set_lock(threading.RLock())  # not tqdm's default multiprocessing lock, which a SIGKILL would leak

    with open(log, "a") as handle:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
    os.environ.pop(FAULT_ENV, None)
    if fault is not None:
        os.environ[FAULT_ENV] = fault
    torch.set_num_threads(1)
    sys.exit(main(argv))


def _outcome(run: Path) -> dict[str, Any]:
    folder = latest_checkpoint(run)
    if folder is None:
        raise RuntimeError(f"{run} has no checkpoint after a run that exited 0; see {run}.log")
    checkpoints = run / "checkpoints"
    leftovers = [p for d in (run, checkpoints) for p in d.iterdir() if p.name.startswith((".tmp-", ".lock"))]
    kept = [p for p in checkpoints.iterdir() if p.name.startswith("step-")]
    return {
        "tensors": (folder / TENSORS).read_bytes(),
        "log": read_records(run),
        "clean": not leftovers and len(kept) <= KEEP,
    }
