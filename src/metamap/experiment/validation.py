"""Choosing a method's adaptation settings on validation tasks, and the record of that choice.

Settings are chosen on tasks held out from the source (validation sensors,
meta-val systems or cells, validation scenarios of the training case), never
on the targets the method is scored on. A candidate whose fit diverges (a
non-finite prediction or score, or a numerical error raised while adapting)
scores +inf: it is never chosen, and the choice fails with one line only when
every candidate diverged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from metamap.errors import ConfigError, MetamapError
from metamap.experiment.method import Method, ValidationTask
from metamap.experiment.table import json_number

Settings = dict[str, Any]  # keyword arguments of Method.adapt: {"steps": 5, "lr": 1e-3}
S = TypeVar("S")
X = TypeVar("X")
P = TypeVar("P")
Y = TypeVar("Y")


class Diverged(MetamapError, ArithmeticError):
    """Raised by a method whose fit went non-finite (a NaN or inf loss): that setting scores +inf."""


# Raised by a fit that went numerically wrong; any other exception is a bug and propagates.
NUMERICAL_ERRORS: tuple[type[BaseException], ...] = (
    ArithmeticError,
    np.linalg.LinAlgError,
    torch.linalg.LinAlgError,
)


@dataclass(frozen=True)
class Choice:
    """The chosen ``settings`` with their validation ``score``, and every candidate ``tried`` in order.

    ``tried`` holds ``(settings, score)`` pairs; a diverged candidate scores +inf.
    """

    settings: Settings
    score: float
    tried: tuple[tuple[Settings, float], ...]

    @property
    def grid(self) -> dict[str, list[Any]]:
        """Each key's distinct candidate values, ascending where all are numbers: ``{"steps": [10, 50, 200]}``.

        Keys in the order they first appear among the candidates; non-numeric values in the order tried.
        """
        values: dict[str, list[Any]] = {}
        for settings, _ in self.tried:
            for key, value in settings.items():
                seen = values.setdefault(key, [])
                if value not in seen:
                    seen.append(value)
        return {key: sorted(seen) if all(map(_is_number, seen)) else seen for key, seen in values.items()}

    @property
    def at_edge(self) -> tuple[str, ...]:
        """The numeric keys whose chosen value is the smallest or largest candidate value of that key.

        A key tried at one value only was fixed, not tuned, and is never at an edge. Empty when every
        tuned value is interior; a key named here means the grid may be too narrow in that direction.
        """
        return tuple(
            key
            for key, values in self.grid.items()
            if len(values) > 1
            and all(map(_is_number, values))
            and key in self.settings
            and self.settings[key] in (values[0], values[-1])
        )

    def to_json(self) -> dict[str, Any]:
        """``{"chosen": settings, "score": s, "tried": [{"settings": ..., "score": ...}]}``; +inf as null."""
        return {
            "chosen": self.settings,
            "score": json_number(self.score),
            "tried": [{"settings": settings, "score": json_number(score)} for settings, score in self.tried],
        }


def choose_on_validation(
    method: Method[S, X, P],
    candidates: Sequence[Settings],
    validation: Sequence[ValidationTask[S, X, Y]],
    score: Callable[[list[P], list[Y]], float],
    *,
    name: str = "method",
) -> Choice:
    """The candidate with the lowest ``score`` on ``validation``; ties go to the earliest candidate.

    Each candidate adapts ``method`` to every validation task's support and
    predicts its inputs; ``score(predictions, truths)`` (lower is better) sees
    all tasks' predictions and truths at once, in the order of ``validation``.
    Every candidate is scored, a single one too, so the record is complete.
    ``name`` names the method in the error raised when every candidate diverged.
    """
    if not candidates:
        raise ConfigError(f"{name}: no candidate settings to choose from")
    if not validation:
        raise ConfigError(f"{name}: no validation tasks to choose settings on")
    tried = tuple((dict(settings), validation_score(method, settings, validation, score)) for settings in candidates)
    best = min(range(len(tried)), key=lambda i: tried[i][1])
    settings, value = tried[best]
    if not math.isfinite(value):
        shown = ", ".join(str(s) for s, _ in tried[:4]) + (" ..." if len(tried) > 4 else "")
        raise ConfigError(
            f"{name}: every candidate setting diverged on the {len(validation)} validation task(s) ({shown}); "
            "try smaller steps or learning rates"
        )
    return Choice(settings, value, tried)


def validation_score(
    method: Method[S, X, P],
    settings: Settings,
    validation: Sequence[ValidationTask[S, X, Y]],
    score: Callable[[list[P], list[Y]], float],
) -> float:
    """``score`` of ``method`` adapted with ``settings`` on the validation tasks; +inf when the fit diverged."""
    predictions = []
    try:
        for task in validation:
            method.adapt(task.support, **settings)
            prediction = method.predict(task.inputs)
            if not _all_finite(prediction):
                return math.inf
            predictions.append(prediction)
        value = float(score(predictions, [task.truth for task in validation]))
    except NUMERICAL_ERRORS:
        return math.inf
    return value if math.isfinite(value) else math.inf


def _is_number(value: object) -> bool:
    """A real number (int or float, not bool) that a grid can be ordered by."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _all_finite(prediction: object) -> bool:
    if isinstance(prediction, torch.Tensor):
        return bool(torch.isfinite(prediction).all())
    if isinstance(prediction, np.ndarray):
        return bool(np.isfinite(prediction).all())
    return True
