"""The one protocol every compared method follows, and a validation task to tune it on."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Generic, Protocol, TypeVar

import torch

from metamap.experiment.guard import guard
from metamap.learners.base import AdaptOptions, MetaLearner
from metamap.nn.devices import module_device

SupportT = TypeVar("SupportT", contravariant=True)
InputsT = TypeVar("InputsT", contravariant=True)
PredictionT = TypeVar("PredictionT", covariant=True)
S = TypeVar("S")
X = TypeVar("X")
Y = TypeVar("Y")


class Method(Protocol[SupportT, InputsT, PredictionT]):
    """A way to map a target's inputs to predictions after seeing its support set.

    The types are the domain's: a traffic method adapts to a
    :class:`~metamap.traffic.experiment.Target` and predicts mph
    ``[n, W, 12]``; a physics method adapts to support tensors
    ``x [T, K, n_in]``, ``y [T, K, n_out]`` and predicts ``[T, G, n_out]``.

    - ``fit(source)``: learn on the source tasks (a no-op for a baseline that
      learns nothing, such as persistence or least squares on a known equation);
    - ``adapt(support, **settings)``: adapt to one target's support set with the
      given adaptation settings (steps, learning rate, penalty, neighbours, ...);
      it replaces any earlier adaptation (settings come by keyword; the
      protocol's ``*args`` only lets each method declare its own keywords);
    - ``predict(x)``: predictions for ``x`` by the latest adaptation.
    """

    def fit(self, source: Any) -> None: ...

    def adapt(self, support: SupportT, *args: Any, **settings: Any) -> None: ...

    def predict(self, x: InputsT) -> PredictionT: ...


@dataclass(frozen=True)
class ValidationTask(Generic[S, X, Y]):
    """One task held out from training to choose settings on: ``support``, query ``inputs`` and their ``truth``."""

    support: S
    inputs: X
    truth: Y


class AdaptedLearner:
    """A trained learner behind the :class:`Method` protocol, on support tensors.

    ``adapt((x_support [T, S, ...], y_support [T, S, ...]), **options)`` runs
    the learner's own adaptation (options: the fields of :class:`AdaptOptions`,
    e.g. ``steps=...``), guarded (:mod:`metamap.experiment.guard`) where the
    learner has an inner loop: a task whose adapted network fits its support
    worse than the meta-learned start is predicted from the start, and
    ``fallbacks`` counts those tasks.
    ``predict(x [T, Q, ...])`` returns the adapted predictions on the CPU,
    without gradients. The network runs where the learner lives; the tensors
    are moved there.
    """

    def __init__(self, learner: MetaLearner) -> None:
        self.learner = learner
        self.fallbacks = 0

    def fit(self, source: Any) -> None:
        """Meta-trained beforehand (by :func:`metamap.training.meta_train` or the domain's loop)."""

    def adapt(self, support: tuple[torch.Tensor, torch.Tensor], **options: Any) -> None:
        device = module_device(self.learner)
        x_support, y_support = (tensor.to(device) for tensor in support)
        settings = AdaptOptions.from_mapping(options)
        adapted = self.learner.adapt(x_support, y_support, options=settings)
        if "steps" not in self.learner.adapt_options:  # no inner loop (a metric learner): nothing to guard
            self.adapted, self.fallbacks = adapted, 0
            return
        start = self.learner.adapt(x_support, y_support, options=replace(settings, steps=0))
        guarded = guard(start, adapted, x_support, y_support)
        self.adapted, self.fallbacks = guarded, guarded.fallbacks

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.adapted.predict(x.to(module_device(self.learner))).cpu()
