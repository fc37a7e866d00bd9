"""Checks of command-line values at the boundary, shared by every ``metamap`` command.

The argparse types (:func:`positive_int`, :func:`nonnegative_int`,
:func:`positive_float`, :func:`nonnegative_float`, :func:`finite_float`,
:func:`time_step`)
turn a bad value into argparse's own one-line usage error (exit code 2).
The path checks (:func:`output_folder`, :func:`output_file`) run before any
work starts, so that a run never computes for minutes and then fails to
write; they raise :class:`~metamap.errors.ConfigError`, which the CLI prints
as one line with exit code 2.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path

from metamap.errors import ConfigError


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (sizes, counts, steps)."""
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (0 usually means 'off')."""
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """Any finite number (no nan, no inf)."""
    return float(_number(text, float))


def positive_float(text: str) -> float:
    """A finite number > 0 (rates, budgets)."""
    value = float(_number(text, float))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0."""
    value = float(_number(text, float))
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def time_step(text: str) -> int:
    """A time step such as ``5min``, ``15min``, ``1h`` or ``1day`` (pandas Timedelta syntax), in whole minutes >= 1."""
    import pandas as pd

    # "2d", the label metamap writes, in the spelling pandas keeps ("2D"; lower-case d is deprecated)
    text = re.sub(r"(?<=\d)\s*d$", "D", text.strip())
    try:
        step = pd.Timedelta(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a time step such as 5min, 1h or 1day, got {text!r}") from None
    if pd.isna(step):
        raise argparse.ArgumentTypeError(f"expected a time step such as 5min, 1h or 1day, got {text!r}")
    minutes, rest = divmod(step.value, 60 * 10**9)
    if rest or minutes < 1:
        raise argparse.ArgumentTypeError(f"expected a time step of whole minutes >= 1 (e.g. 5min, 1h), got {text!r}")
    return int(minutes)


def durations(text: str) -> tuple[int, ...]:
    """Comma-separated durations such as ``15min,30min,1h`` (each as :func:`time_step`), in minutes."""
    return tuple(time_step(part.strip()) for part in text.split(","))


def steps_of(minutes: int, step_minutes: int, what: str) -> int:
    """A duration in minutes as a whole number of ``step_minutes`` steps; ``what`` names it in the error."""
    if minutes % step_minutes:
        raise ConfigError(
            f"{what}: expected a multiple of the data's {duration_label(step_minutes)} step, "
            f"got {duration_label(minutes)}"
        )
    return minutes // step_minutes


def duration_label(minutes: int) -> str:
    """``90`` -> ``"90min"``, ``60`` -> ``"1h"``, ``1440`` -> ``"1d"``: the shortest exact label."""
    if minutes % (24 * 60) == 0:
        return f"{minutes // (24 * 60)}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}min"


def output_folder(path: Path, what: str = "--out") -> Path:
    """Check that ``path`` is, or can become, a writable folder; return it.

    Raises:
        ConfigError: ``path`` is a file or a device, lies under a file, or
            its nearest existing parent is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        kind = "a file" if path.is_file() else "a device or other special file"
        raise ConfigError(f"{what} {path}: expected a folder (or a new path), but it is {kind}")
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{what} {path}: expected a folder, but {existing} on its path is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path}: the folder {existing} is not writable")
    return path


def output_file(path: Path, inputs: Iterable[Path] = (), what: str = "--out") -> Path:
    """Check that ``path`` can be written as a regular file and is none of ``inputs``; return it.

    Raises:
        ConfigError: ``path`` is a folder or a device, lies under a file, is
            not writable, or is the same file as one of ``inputs``.
    """
    path = Path(path)
    for source in inputs:
        source = Path(source)
        if path.resolve() == source.resolve() or (path.exists() and source.exists() and os.path.samefile(path, source)):
            raise ConfigError(f"{what} {path} is the input file {source}: choose another output path")
    if path.exists() and not path.is_file():
        raise ConfigError(
            f"{what} {path}: expected a file path, but it is {'a folder' if path.is_dir() else 'not a regular file'}"
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{what} {path}: the file is not writable")
    output_folder(path.parent, what=f"{what} {path}: its folder")
    return path


def available_memory(device: str = "cpu") -> int:
    """Bytes that can be allocated now: ``MemAvailable`` of ``/proc/meminfo`` on the CPU (else free pages), free GPU memory on CUDA."""
    if str(device).startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_memory(needed: int, what: str, hint: str, device: str = "cpu") -> None:
    """Refuse, before allocating, work estimated to need ``needed`` bytes when the device has less available.

    Raises:
        ConfigError: naming ``what`` takes the memory, the estimate, what is available, and ``hint``.
    """
    available = available_memory(device)
    if needed > available:
        raise ConfigError(
            f"{what} needs about {needed / 2**30:.1f} GiB of memory, but {available / 2**30:.1f} GiB "
            f"are available on {device}; {hint}"
        )


def writable_output_folder(path: Path, what: str = "--out") -> Path:
    """:func:`output_folder`, then a real write test in the nearest existing folder; return ``path``.

    The test (a temporary file, removed at once) catches what permission bits
    do not show: read-only mounts, ``/proc``, and the superuser, for whom
    every folder looks writable.

    Raises:
        ConfigError: as :func:`output_folder`, or the folder refuses a new file.
    """
    import tempfile

    path = output_folder(path, what)
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot write in {existing} ({exc.strerror or exc})") from None
    return path


def add_run_folder_flags(parser: argparse.ArgumentParser, *, resumable: bool = True) -> None:
    """Add ``--overwrite`` (and, for a command that checkpoints, ``--resume``) to a command writing a run.

    The meaning is that of :func:`metamap.training.run_folder.claim_run_folder`: a folder that already
    holds a run is refused unless it is continued (``--resume``) or replaced (``--overwrite``: metamap's
    own files of the earlier run are deleted, nothing else).
    """
    if resumable:
        parser.add_argument("--resume", action="store_true", help="continue the run already in --out")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the run already in --out (deletes only metamap's own files)"
    )


# -- flags shared by several commands: one definition and one help text each --------------------------

SEED_HELP = "seed of every random draw (the same seed gives the same numbers)"
DEVICE_HELP = "auto | cpu | cuda (auto: the GPU when there is one)"
NO_PROGRESS_HELP = "hide the progress bars"
JSON_HELP = "write the results to this JSON file"
OUT_KINDS = {
    "run": "run folder",  # a folder holding one run: checkpoints and what it was trained on
    "folder": "output folder",
    "file": "output file",
}


def add_out_flag(parser: argparse.ArgumentParser, kind: str, holds: str, *, default: Path | None = None) -> None:
    """Add ``--out``: a ``kind`` (``run`` | ``folder`` | ``file``) path, required unless ``default`` is given.

    The help reads ``"<run folder|output folder|output file>: <holds>"``, so every command names the same
    kinds of output the same way and says what it writes there.
    """
    parser.add_argument(
        "--out", type=Path, required=default is None, default=default, help=f"{OUT_KINDS[kind]}: {holds}"
    )


def add_steps_flag(
    parser: argparse.ArgumentParser,
    counts: str,
    *,
    default: int | None,
    allow_zero: bool = False,
    unset: str | None = None,
) -> None:
    """Add ``--steps``: a count of ``counts`` steps (e.g. ``"meta-training"``), an integer >= 1 (>= 0 with
    ``allow_zero``). With ``default=None`` the command chooses; ``unset`` says how."""
    parser.add_argument(
        "--steps",
        type=nonnegative_int if allow_zero else positive_int,
        default=default,
        help=f"{counts} steps" + (f" (default: {unset})" if unset else ""),
    )


def add_seed_flag(parser: argparse.ArgumentParser, *, default: int = 0) -> None:
    """Add ``--seed``: an integer >= 0."""
    parser.add_argument("--seed", type=nonnegative_int, default=default, help=SEED_HELP)


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--device`` (default ``auto``); a command resolves it with
    :func:`metamap.training.distributed.pick_device`."""
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)


def add_progress_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--no-progress`` (``args.no_progress``)."""
    parser.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)


def add_json_flag(parser: argparse.ArgumentParser, *, required: bool = False, default: Path | None = None) -> None:
    """Add ``--json``: the path of a JSON file of results (``None`` unless ``required`` or ``default``)."""
    parser.add_argument("--json", type=Path, required=required, default=default, help=JSON_HELP)


def add_step_flag(parser: argparse.ArgumentParser, flag: str = "--step", *, of: str = "the readings") -> None:
    """Add a time-step flag (``args.step`` for ``--step``): minutes between readings, given as ``5min``, ``1h``, ...
    (:func:`time_step`); ``None`` when absent, for a file that carries its own step."""
    parser.add_argument(
        flag,
        type=time_step,
        default=None,
        metavar="STEP",
        help=f"time step of {of}, e.g. 5min, 15min, 1h, 1day: required for a file without timestamps (.npz) "
        "unless it stores one; checked against the timestamps of a file that has them",
    )


def add_missing_value_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--missing-value X`` (repeatable; ``args.missing_value``, a list of floats) and
    ``--zero-is-missing``/``--keep-zeros`` (``args.zero_is_missing``, default True): which readings
    of a data file are missing rather than measured."""
    parser.add_argument(
        "--missing-value",
        type=finite_float,
        action="append",
        default=[],
        metavar="X",
        help="a code the file uses for a missing reading, e.g. -1 (repeat for several codes)",
    )
    zeros = parser.add_mutually_exclusive_group()
    zeros.add_argument(
        "--zero-is-missing",
        dest="zero_is_missing",
        action="store_true",
        default=True,
        help="treat readings of 0 as missing (the default: a detector reports speed 0 when it has no reading)",
    )
    zeros.add_argument(
        "--keep-zeros",
        dest="zero_is_missing",
        action="store_false",
        help="keep readings of 0 as real zeros (counts on an empty road)",
    )
