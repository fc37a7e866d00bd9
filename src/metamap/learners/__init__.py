"""Meta-learners behind one protocol (see :mod:`metamap.learners.base`).

``make_learner(name, model, **options)`` builds one by name; ``LEARNERS``
maps each name to its factory, a learner class (or a class with some of its
options fixed) whose keyword-only constructor parameters are the options.
``"gated"`` is the learned, gated optimizer; ``"mann"`` the memory-augmented
LSTM, whose ``model`` is the encoder and whose episodes must be shuffled
sequences (:class:`metamap.tasks.sequence.SequenceEpisodes`). Losses are in
:mod:`metamap.learners.losses`; adapt options in :class:`AdaptOptions`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

from torch import nn

from metamap.errors import ConfigError
from metamap.learners.anil import ANIL
from metamap.learners.base import Adapted, AdaptOptions, MetaLearner
from metamap.learners.gated import GatedOptimizer
from metamap.learners.gradient import GradientLearner
from metamap.learners.maml import MAML
from metamap.learners.mann import MANN
from metamap.learners.matching import MatchingNet
from metamap.learners.meta_sgd import MetaSGD
from metamap.learners.pretrain import Pretrained
from metamap.learners.protonet import ProtoNet
from metamap.learners.reptile import Reptile

LEARNERS: dict[str, Callable[..., MetaLearner]] = {
    "maml": MAML,
    "fomaml": partial(MAML, first_order=True),
    "metasgd": MetaSGD,
    "anil": ANIL,
    "reptile": Reptile,
    "protonet": ProtoNet,
    "matching": MatchingNet,
    "pretrain": Pretrained,
    "gated": GatedOptimizer,
    "mann": MANN,
}


def make_learner(name: str, model: nn.Module, **options: Any) -> MetaLearner:
    """Build learner ``name`` around ``model``; unknown names or options raise ConfigError."""
    if name not in LEARNERS:
        raise ConfigError(f"unknown learner {name!r}; expected one of {', '.join(LEARNERS)}")
    factory = LEARNERS[name]
    allowed = _options(factory)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(f"learner {name!r} has no option(s) {unknown}; it takes {sorted(allowed)}")
    return factory(model, **options)


def _options(factory: Callable[..., MetaLearner]) -> set[str]:
    """Keyword options a learner class accepts, following ``**kwargs`` up the class chain."""
    cls = factory.func if isinstance(factory, partial) else factory
    assert isinstance(cls, type)  # LEARNERS holds learner classes and partials of them
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.kind is p.KEYWORD_ONLY}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    if isinstance(factory, partial):
        names -= set(factory.keywords)
    return names


__all__ = [
    "ANIL",
    "LEARNERS",
    "MAML",
    "MANN",
    "AdaptOptions",
    "Adapted",
    "GatedOptimizer",
    "GradientLearner",
    "MatchingNet",
    "MetaLearner",
    "MetaSGD",
    "Pretrained",
    "ProtoNet",
    "Reptile",
    "make_learner",
]
