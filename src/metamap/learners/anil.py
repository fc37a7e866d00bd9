"""ANIL (Raghu et al. 2020): Almost No Inner Loop — adapt only the head.

The body is meta-learned as a feature extractor; the inner loop updates only
the parameters under the model's head (``model.head_prefix`` when the
backbone declares one, e.g. :class:`metamap.nn.MLP` and :class:`metamap.nn.Conv4`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from metamap.errors import ConfigError
from metamap.learners.maml import MAML


class ANIL(MAML):
    """MAML whose inner loop adapts only ``head_prefix`` (default: the model's own)."""

    def __init__(self, model: nn.Module, *, head_prefix: str | None = None, **kwargs: Any) -> None:
        if "adapt_prefixes" in kwargs:
            raise ConfigError(
                "ANIL adapts only the model's head and takes no adapt_prefixes; "
                f"got adapt_prefixes={kwargs['adapt_prefixes']!r} (pass head_prefix='name of the last layer')"
            )
        head_prefix = head_prefix if head_prefix is not None else getattr(model, "head_prefix", None)
        if head_prefix is None:
            raise ConfigError(
                f"ANIL needs to know the model's head: {type(model).__name__} has no head_prefix; "
                "pass head_prefix='name of the last layer'"
            )
        super().__init__(model, adapt_prefixes=(head_prefix + ".",), **kwargs)
