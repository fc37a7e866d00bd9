"""Masked forecast errors, as the field computes them (BasicTS / DCRNN ``masked_mae`` etc.).

Every metric takes predictions and readings ``[..., 12]`` in the data's unit
(mph) and the readings' ``observed`` mask (bool, True = a reading exists;
the loaders turn the files' zeros into False), ignores the missing readings
and averages over all observed values. MAPE is in percent.
"""

from __future__ import annotations

import torch

from metamap.errors import DataError
from metamap.traffic.features import REPORT_HORIZONS


def masked_errors(pred: torch.Tensor, truth: torch.Tensor, observed: torch.Tensor) -> dict[str, float]:
    """MAE, RMSE and MAPE (%) of ``pred`` against ``truth`` where ``observed`` (all the same shape)."""
    count = int(observed.sum())
    if count == 0:
        raise DataError("no valid readings to score: every target reading is missing")
    if not torch.isfinite(pred[observed]).all():
        return {"mae": float("inf"), "rmse": float("inf"), "mape": float("inf")}
    err = (pred - truth)[observed].double()
    return {
        "mae": float(err.abs().mean()),
        "rmse": float(err.pow(2).mean().sqrt()),
        "mape": float((err.abs() / truth[observed].double().abs()).mean() * 100),
    }


def horizon_errors(pred: torch.Tensor, truth: torch.Tensor, observed: torch.Tensor) -> dict[str, dict[str, float]]:
    """Errors at horizons 3, 6, 12 (15, 30, 60 min) of ``[..., 12]`` forecasts, keyed ``"15min"`` etc."""
    return {
        f"{h * 5}min": masked_errors(pred[..., h - 1], truth[..., h - 1], observed[..., h - 1]) for h in REPORT_HORIZONS
    }


def errors_by_step(pred: torch.Tensor, truth: torch.Tensor, observed: torch.Tensor) -> list[float]:
    """MAE at each of the 12 horizons (for the error-by-horizon plot)."""
    return [masked_errors(pred[..., h], truth[..., h], observed[..., h])["mae"] for h in range(pred.shape[-1])]
