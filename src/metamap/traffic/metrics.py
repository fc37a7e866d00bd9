"""Masked forecast errors in the field's convention (null value 0).

Every metric takes predictions and readings ``[..., 12]`` in the data's unit
(mph), ignores readings equal to 0 (missing) and averages over all valid
values (BasicTS / DCRNN ``masked_mae`` etc.). MAPE is in percent.
"""

from __future__ import annotations

import torch

from metamap.errors import DataError
from metamap.traffic.features import REPORT_HORIZONS


def masked_errors(pred: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """MAE, RMSE and MAPE (%) over all valid readings of ``pred``/``truth`` (same shape)."""
    valid = truth != 0
    count = int(valid.sum())
    if count == 0:
        raise DataError("no valid readings to score: every target reading is 0 (missing)")
    if not torch.isfinite(pred[valid]).all():
        return {"mae": float("inf"), "rmse": float("inf"), "mape": float("inf")}
    err = (pred - truth)[valid].double()
    return {
        "mae": float(err.abs().mean()),
        "rmse": float(err.pow(2).mean().sqrt()),
        "mape": float((err.abs() / truth[valid].double().abs()).mean() * 100),
    }


def horizon_errors(pred: torch.Tensor, truth: torch.Tensor) -> dict[str, dict[str, float]]:
    """Errors at horizons 3, 6, 12 (15, 30, 60 min) of ``[..., 12]`` forecasts, keyed ``"15min"`` etc."""
    return {f"{h * 5}min": masked_errors(pred[..., h - 1], truth[..., h - 1]) for h in REPORT_HORIZONS}


def errors_by_step(pred: torch.Tensor, truth: torch.Tensor) -> list[float]:
    """MAE at each of the 12 horizons (for the error-by-horizon plot)."""
    return [masked_errors(pred[..., h], truth[..., h])["mae"] for h in range(pred.shape[-1])]
