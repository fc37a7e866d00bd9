"""Masked forecast errors, as the field computes them (BasicTS / DCRNN ``masked_mae`` etc.).

Every metric takes predictions and readings ``[..., horizon]`` in the data's
unit and the readings' ``observed`` mask (bool, True = a reading exists),
ignores the missing readings and averages over all observed values. MAPE is
in percent, and None where an observed reading is 0 (counts, flows): a
percentage of nothing has no meaning.
"""

from __future__ import annotations

from typing import cast

import torch

from metamap.errors import DataError
from metamap.traffic.features import Windows


def masked_errors(pred: torch.Tensor, truth: torch.Tensor, observed: torch.Tensor) -> dict[str, float | None]:
    """MAE, RMSE and MAPE (%) of ``pred`` against ``truth`` where ``observed`` (all the same shape)."""
    count = int(observed.sum())
    if count == 0:
        raise DataError("no valid readings to score: every target reading is missing")
    if not torch.isfinite(pred[observed]).all():
        return {"mae": float("inf"), "rmse": float("inf"), "mape": float("inf")}
    err = (pred - truth)[observed].double()
    readings = truth[observed].double().abs()
    return {
        "mae": float(err.abs().mean()),
        "rmse": float(err.pow(2).mean().sqrt()),
        "mape": float((err.abs() / readings).mean() * 100) if bool((readings > 0).all()) else None,
    }


def horizon_errors(
    pred: torch.Tensor, truth: torch.Tensor, observed: torch.Tensor, windows: Windows, step_minutes: int
) -> dict[str, dict[str, float | None]]:
    """Errors at the reported horizons of ``[..., horizon]`` forecasts, keyed by duration (``"15min"``, ``"1h"``)."""
    return {
        label: masked_errors(pred[..., h - 1], truth[..., h - 1], observed[..., h - 1])
        for label, h in zip(windows.labels(step_minutes), windows.horizons, strict=True)
    }


def errors_by_step(pred: torch.Tensor, truth: torch.Tensor, observed: torch.Tensor) -> list[float]:
    """MAE at each forecast step (for the error-by-horizon plot)."""
    return [masked_mae(pred[..., h], truth[..., h], observed[..., h]) for h in range(pred.shape[-1])]


def masked_mae(pred: torch.Tensor, truth: torch.Tensor, observed: torch.Tensor) -> float:
    """The MAE of :func:`masked_errors` (never left out, unlike MAPE)."""
    return cast(float, masked_errors(pred, truth, observed)["mae"])
