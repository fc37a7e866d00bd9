"""Ensemble calibration on validation fields: how much of the network's mean correction to keep, and one
spread factor.

A residual ensemble stands on an estimate (the kriging it was conditioned
on). :class:`Calibration` moves the ensemble's centre between that estimate
and the member mean, and scales the members' deviations:

    ``centre = estimate + w (mean - estimate)``,  ``calibrated = centre + s (members - mean)``.

:func:`fit_calibration` chooses the mean weight ``w`` from :data:`MEAN_WEIGHTS`
by the centre's mean squared error over the validation fields, so that a
network whose correction does not help there is left out (``w = 0``: the
estimate itself, which makes the estimate the floor), and then ``s`` so that
the mean per-field spread/skill over the validation fields is 1 (the
benchmark's metric: spread as in :func:`metamap.geo.metrics.ensemble_spread`,
over the RMSE of the centre). Both act in model space, so a non-negative
variable stays non-negative on the way back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from metamap.errors import ConfigError, DataError, ShapeError, describe

MEAN_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class Calibration:
    """``mean_weight``: the share of the member mean's departure from the estimate kept; ``spread``: the factor
    on the members' deviations from their mean."""

    mean_weight: float = 1.0
    spread: float = 1.0

    def apply(self, members: np.ndarray, estimate: np.ndarray) -> np.ndarray:
        """``members [M, H, W]`` calibrated around ``estimate [H, W]``."""
        members = np.asarray(members)
        mean = members.mean(axis=0, keepdims=True)
        centre = estimate + self.mean_weight * (mean - estimate)
        return (centre + self.spread * (members - mean)).astype(members.dtype)

    def to_json(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_json(cls, record: object, what: str) -> Calibration:
        """The calibration ``record`` (``{"mean_weight", "spread"}``, as :meth:`to_json` writes it) read from
        ``what``; ConfigError naming what was expected where a value is missing or out of range."""
        if not isinstance(record, dict) or set(record) != {"mean_weight", "spread"}:
            raise ConfigError(f"{what}: expected a calibration {{mean_weight, spread}}, got {record!r:.80}")
        weight, spread = record["mean_weight"], record["spread"]
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (weight, spread))
        if not numbers or not 0.0 <= weight <= 1.0 or not (np.isfinite(spread) and spread > 0):
            raise ConfigError(
                f"{what}: expected mean_weight in [0, 1] and a finite spread > 0, got {weight!r} and {spread!r}"
            )
        return cls(mean_weight=float(weight), spread=float(spread))


def fit_calibration(
    ensembles: list[np.ndarray], estimates: list[np.ndarray], truths: list[np.ndarray], masks: list[np.ndarray]
) -> Calibration:
    """The :class:`Calibration` of validation fields: ``ensembles`` of ``[M, H, W]``, the ``estimates`` they
    stand on, ``truths`` and ``masks`` (True = scored), each ``[H, W]``, all in model space."""
    if not ensembles or not len(ensembles) == len(estimates) == len(truths) == len(masks):
        raise ShapeError(
            f"expected as many ensembles, estimates, truths and masks (>= 1), got {len(ensembles)}, "
            f"{len(estimates)}, {len(truths)}, {len(masks)}"
        )
    fields = []
    for members, estimate, truth, mask in zip(ensembles, estimates, truths, masks, strict=True):
        members, truth = np.asarray(members, np.float64), np.asarray(truth, np.float64)
        if members.ndim != 3 or members.shape[1:] != truth.shape or members.shape[0] < 2:
            raise ShapeError(f"expected an ensemble [M>=2, H, W] of the truth's grid, got {describe(members)}")
        scored = np.asarray(mask, bool) & np.isfinite(truth)
        if scored.any():
            m = members.shape[0]
            variance = members.var(axis=0, ddof=1)[scored] * (m + 1) / m
            fields.append(
                (members.mean(axis=0)[scored], np.asarray(estimate, np.float64)[scored], truth[scored], variance)
            )
    if not fields:
        raise DataError("the validation fields have no scored pixel; cannot fit a calibration")

    def centre_error(weight: float) -> list[np.ndarray]:
        return [estimate + weight * (mean - estimate) - truth for mean, estimate, truth, _ in fields]

    weight = min(MEAN_WEIGHTS, key=lambda w: float(np.mean(np.concatenate(centre_error(w)) ** 2)))
    spreads = np.array([np.sqrt(variance.mean()) for *_, variance in fields])
    if not np.all(spreads > 0):
        raise DataError("the validation ensembles have no spread; cannot fit a spread scale")
    skills = np.array([np.sqrt(np.mean(error**2)) for error in centre_error(weight)])
    return Calibration(mean_weight=weight, spread=float(1.0 / np.mean(spreads / np.maximum(skills, 1e-12))))
