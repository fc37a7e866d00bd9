"""Pictures a traffic engineer would rather look at than read (matplotlib, PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from metamap.plotting import pyplot, save_png


def error_by_horizon(
    mae_by_step: dict[str, Sequence[float]], path: Path, title: str = "", step_minutes: int = 5
) -> Path:
    """MAE (mph) against forecast horizon, one line per method."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for method, values in sorted(mae_by_step.items(), key=lambda kv: kv[1][-1]):
        minutes = [step_minutes * (i + 1) for i in range(len(values))]
        ax.plot(minutes, values, marker="o", markersize=3, label=method)
    ax.set_xlabel("horizon (minutes)")
    ax.set_ylabel("masked MAE (mph)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return save_png(fig, path)


def forecasts_vs_truth(
    times: np.ndarray,
    truth: torch.Tensor,
    observed: torch.Tensor,
    predictions: dict[str, torch.Tensor],
    sensor_names: Sequence[str],
    path: Path,
    horizon: int = 12,
    step_minutes: int = 5,
) -> Path:
    """For a few sensors: the readings and each method's forecast made ``horizon`` steps earlier.

    ``times [W]`` are the origins' timestamps, ``step_minutes`` apart from one step to the next;
    ``truth``, predictions ``[n, W, 12]`` (mph); ``observed`` bool ``[n, W, 12]`` (False: no reading, not drawn).
    """
    plt = pyplot()
    n = len(sensor_names)
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.4 * n), sharex=True, squeeze=False)
    valid_times = times + np.timedelta64(step_minutes * horizon, "m")
    for row, (ax, name) in enumerate(zip(axes[:, 0], sensor_names)):
        readings = np.where(observed[row, :, horizon - 1].numpy(), truth[row, :, horizon - 1].numpy(), np.nan)
        ax.plot(valid_times, readings, color="black", lw=1.2, label="observed")
        for method, prediction in predictions.items():
            ax.plot(valid_times, prediction[row, :, horizon - 1].numpy(), lw=0.9, label=method)
        ax.set_ylabel("mph")
        ax.set_title(f"sensor {name}: forecast {step_minutes * horizon} min ahead", fontsize=9)
    axes[0, 0].legend(fontsize=7, ncol=4)
    fig.autofmt_xdate()
    fig.tight_layout()
    return save_png(fig, path)


def target_forecasts(target, predictions: dict[str, torch.Tensor], shown: torch.Tensor, path: Path) -> Path:
    """:func:`forecasts_vs_truth` for the sensors ``shown`` (indices into ``target.nodes``) of an
    :class:`~metamap.traffic.experiment.Target`; ``predictions`` are ``[n, W, 12]`` for all its sensors."""
    data = target.features.data
    return forecasts_vs_truth(
        data.times[target.test_origins.numpy()],
        target.truth[shown],
        target.observed[shown],
        {m: p[shown] for m, p in predictions.items()},
        [data.sensor_ids[int(target.nodes[i])] for i in shown],
        path,
        step_minutes=data.step_minutes,
    )
