"""One writer per run folder, and a new run never silently mixed with an old one.

Every command that writes a run folder wraps its work in
:func:`claim_run_folder`::

    from metamap.training.run_folder import claim_run_folder

    with claim_run_folder(args.out, resume=args.resume, overwrite=args.overwrite) as run:
        ...  # train, write checkpoints and results into run.path

On entry the claim

1. checks the path with :func:`metamap.arguments.writable_output_folder`
   (ConfigError when it is a file, lies under a file, or is not writable)
   and creates the folder;
2. takes an exclusive, non-blocking lock on ``<run>/.lock``
   (``fcntl.flock``), whose file records the holder's PID, host, command
   and start time; while another process holds it the claim raises
   CheckpointError naming that PID and command. The kernel drops the lock
   when its holder exits, even by SIGKILL, so a crash never leaves the
   folder locked;
3. removes what interrupted writes left behind: ``.tmp-*`` entries and
   ``.*.tmp`` files in the run folder and in ``checkpoints/`` (while the
   lock is held nobody else can be writing them);
4. without ``resume``, refuses (ConfigError) a folder that holds anything
   besides its lock; with ``overwrite``, deletes the previous run's files
   first: metamap's own outputs (:data:`RUN_OUTPUTS` plus the command's
   ``outputs``), nothing else. ``resume`` with a folder that holds no
   checkpoint yet starts from scratch. A folder among the command's
   ``inputs`` is refused (ConfigError) before anything is touched.

On exit the lock is released and its file removed; a folder the claim
created that is still empty (the command failed before writing) is removed
too.

Claims nest within one process: claiming a folder this process already
holds returns the same :class:`RunFolder` and checks nothing again. So a
command claims first with its own ``--resume`` / ``--overwrite`` and the
library functions it calls (:func:`metamap.training.meta_train`,
:func:`metamap.training.diffusion.train_diffusion`, which claim their
``run_dir`` themselves) simply join that claim.

On platforms without ``fcntl`` (Windows) nothing is locked; the claim warns
once (RuntimeWarning) that two commands writing the same folder are not
detected there, and does everything else.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from metamap.arguments import writable_output_folder
from metamap.errors import CheckpointError, ConfigError

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK = ".lock"
RUN_OUTPUTS = ("checkpoints", "metrics.jsonl", "metrics.csv", "tensorboard", "evaluation.json")
"""What every training run writes; ``overwrite`` deletes these (and the command's own ``outputs``)."""


@dataclass(frozen=True)
class RunFolder:
    """A claimed run folder: ``path``, and whether the claim continues an earlier run (``resume``)."""

    path: Path
    resume: bool


_held: dict[Path, RunFolder] = {}  # folders this process holds (resolved path -> claim), for nested claims
_warned_no_lock = False


@contextmanager
def claim_run_folder(
    path: Path,
    *,
    resume: bool,
    overwrite: bool = False,
    outputs: Iterable[str] = (),
    inputs: Iterable[Path] = (),
    what: str = "--out",
    command: str | None = None,
) -> Iterator[RunFolder]:
    """Hold ``path`` as this process's run folder for the ``with`` block (see the module notes).

    Args:
        path: the run folder (created when missing).
        resume: continue the run already in the folder (its files are kept).
        overwrite: replace the run already in the folder; excludes ``resume``.
        outputs: names of further files or folders the command writes into
            the run folder, deleted by ``overwrite`` with :data:`RUN_OUTPUTS`.
        inputs: folders the command reads (``--run``); the run folder must be
            none of them.
        what: how messages name the folder (the command-line flag).
        command: recorded in the lock file; default the process's command line.

    Raises:
        ConfigError: bad path; a non-empty folder without ``resume`` or
            ``overwrite``; both ``resume`` and ``overwrite``; the folder is
            one of ``inputs``.
        CheckpointError: another process holds the folder (its PID named).
    """
    path = writable_output_folder(Path(path), what=what)
    key = path.resolve()
    if key in _held:
        yield _held[key]
        return
    for source in inputs:
        if Path(source).resolve() == key:
            raise ConfigError(f"{what} {path} is the input folder {source}: write the new run to another folder")
    if resume and overwrite:
        raise ConfigError(f"{what} {path}: --resume continues the run in it, --overwrite replaces it; choose one")
    created = not path.exists()
    fd = _lock(path, what, command if command is not None else _command_line())
    try:
        _remove_leftovers(path)
        previous = sorted(entry.name for entry in path.iterdir() if entry.name != LOCK)
        if previous and not resume:
            if not overwrite:
                shown = ", ".join(previous[:4]) + (", ..." if len(previous) > 4 else "")
                raise ConfigError(
                    f"{what} {path} already holds files ({shown}); add --resume to continue that run, "
                    f"--overwrite to replace it (only metamap's own files are deleted), or choose another folder"
                )
            for name in (*RUN_OUTPUTS, *outputs):
                _discard(path / name)
        folder = _held[key] = RunFolder(path, resume)
        try:
            yield folder
        finally:
            del _held[key]
    finally:
        _unlock(path, fd)
        if created and path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def lock_holder(path: Path) -> str:
    """Who holds (or last held) ``path``'s lock, from its lock file: ``PID 123 on host (cmd, since ...)``."""
    try:
        record = json.loads((Path(path) / LOCK).read_text())
        return f"PID {record['pid']} on {record['host']} running {record['command']!r} since {record['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "PID unknown: the holder is still starting"


def _lock(path: Path, what: str, command: str) -> int | None:
    """Open and lock ``path/.lock``; the open descriptor (None where there is no fcntl)."""
    if fcntl is None:  # pragma: no cover - Windows
        path.mkdir(parents=True, exist_ok=True)
        _warn_no_lock()
        return None
    lock = path / LOCK
    for _ in range(5):  # a releasing holder removes the file: lock the file that is at the path now
        try:
            path.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"{what} {path}: cannot create {lock.name} in it ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CheckpointError(
                f"{what} {path} is in use by another metamap process ({lock_holder(path)}); "
                "wait for it to finish or choose another folder"
            ) from None
        mine = os.fstat(fd)
        try:
            there = os.stat(lock)
        except FileNotFoundError:
            there = None
        if there is not None and (there.st_ino, there.st_dev) == (mine.st_ino, mine.st_dev):
            record = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "command": command,
                "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)
            return fd
        os.close(fd)
    raise CheckpointError(f"{what} {path}: could not lock {lock}, other processes keep replacing it")


def _unlock(path: Path, fd: int | None) -> None:
    if fd is None:  # pragma: no cover - Windows
        return
    (path / LOCK).unlink(missing_ok=True)  # while still holding it: a waiter then sees a stale file and retries
    os.close(fd)


def _remove_leftovers(path: Path) -> None:
    """Delete the hidden temporaries of interrupted writes in the run folder and its ``checkpoints/``."""
    for folder in (path, path / "checkpoints"):
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            name = entry.name
            if name.startswith(".tmp-") or (name.startswith(".") and name.endswith(".tmp")):
                _delete(entry)


def _discard(path: Path) -> None:
    """Delete ``path`` (a file or folder) if present: renamed aside first, so a kill leaves only a temporary."""
    if not path.exists() and not path.is_symlink():
        return
    trash = path.with_name(f".tmp-trash-{path.name}-{os.getpid()}")
    os.replace(path, trash)
    _delete(trash)


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _command_line() -> str:
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("__main__.py", "metamap"):
        argv[0] = "metamap"
    return " ".join(argv)


def _warn_no_lock() -> None:  # pragma: no cover - Windows
    global _warned_no_lock
    if not _warned_no_lock:
        _warned_no_lock = True
        warnings.warn(
            "run folders cannot be locked on this platform (no fcntl): two metamap commands writing to the same "
            "folder at once are not detected",
            RuntimeWarning,
            stacklevel=3,
        )
