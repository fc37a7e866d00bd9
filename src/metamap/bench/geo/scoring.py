"""Scores shared by the geo benchmark's parts: timing a call, ensemble and point scores, means over fields."""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from metamap.geo import metrics
from metamap.report import mean_ci95


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def summarize(per_field: list[dict[str, float]], seconds: list[float] | None = None) -> dict[str, Any]:
    """Mean and 95% CI half-width of each score over fields; the median seconds per field."""
    out: dict[str, Any] = {}
    for key in per_field[0]:
        mean, ci = mean_ci95([row[key] for row in per_field])
        out[key], out[f"{key}_ci95"] = mean, ci
    if seconds is not None:
        out["seconds_median"] = statistics.median(seconds)
    out["n_fields"] = len(per_field)
    out["rmse_per_field"] = [row["rmse"] for row in per_field]
    return out


def ensemble_scores(
    ensemble_k: np.ndarray, truth: np.ndarray, missing: np.ndarray | None, lat: np.ndarray
) -> dict[str, float]:
    return {
        "rmse": metrics.ensemble_mean_rmse(ensemble_k, truth, lat, missing),
        "crps": metrics.fair_crps(ensemble_k, truth, lat, missing),
        "spread_skill": metrics.spread_skill(ensemble_k, truth, lat, missing),
    }


def point_scores(
    prediction: np.ndarray, truth: np.ndarray, mask: np.ndarray | None, lat: np.ndarray
) -> dict[str, float]:
    """A deterministic field's RMSE and CRPS (= MAE)."""
    return {"rmse": metrics.rmse(prediction, truth, lat, mask), "crps": metrics.mae(prediction, truth, lat, mask)}
