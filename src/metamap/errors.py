"""Exceptions for user mistakes, one type per kind, raised at the boundary.

Every message names what was expected and what came instead, so that a user
never has to read a traceback from deep inside torch.
"""

from __future__ import annotations


class MetamapError(Exception):
    """Base class of every error metamap raises on purpose."""


class ShapeError(MetamapError, ValueError):
    """A tensor or array has the wrong shape or dtype for its consumer."""


class DataError(MetamapError, ValueError):
    """Input data are unusable: NaN/inf, missing or corrupt files, too few samples."""


class ConfigError(MetamapError, ValueError):
    """An unknown name or an invalid option value (learner, benchmark, K, N, ...)."""


class CheckpointError(MetamapError):
    """A checkpoint is missing, corrupt, or was written for another model."""


def one_line(exc: BaseException) -> str:
    """``exc`` as ``Type: last non-empty line`` of its message, for quoting a library's error in one line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1]}" if lines else type(exc).__name__


def describe(t) -> str:
    """Short human description of a tensor/array: ``float32[25, 5, 1]``."""
    shape = getattr(t, "shape", None)
    dtype = str(getattr(t, "dtype", type(t).__name__)).replace("torch.", "")
    if shape is None:
        return dtype
    return f"{dtype}[{', '.join(str(s) for s in shape)}]"


class TrainingInterrupted(MetamapError):
    """Training was stopped (Ctrl-C, SIGTERM) after a checkpoint was written; resume to go on."""
