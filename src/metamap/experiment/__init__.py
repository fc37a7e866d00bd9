"""Comparing methods on target tasks: one protocol, one way to tune on validation, one table.

- :class:`Method`: anything that learns on source tasks (``fit``), adapts to
  a target's support set (``adapt``) and predicts (``predict``); learned
  methods and classical baselines alike.
- :func:`choose_on_validation`: every candidate adaptation setting scored on
  validation tasks (never on the targets); a diverged fit scores +inf; the
  :class:`Choice` records what was chosen and what was tried.
- :class:`ResultTable`: rows of method x setting, metric columns with
  optional 95% intervals; JSON, markdown and plain text.
"""

from metamap.experiment.method import AdaptedLearner, Method, ValidationTask
from metamap.experiment.table import ResultTable, Row
from metamap.experiment.validation import Choice, Diverged, Settings, choose_on_validation

__all__ = [
    "AdaptedLearner",
    "Choice",
    "Diverged",
    "Method",
    "ResultTable",
    "Row",
    "Settings",
    "ValidationTask",
    "choose_on_validation",
]
