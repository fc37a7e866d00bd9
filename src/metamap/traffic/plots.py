"""Pictures a traffic engineer would rather look at than read (matplotlib, PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from metamap.arguments import duration_label
from metamap.plotting import pyplot, save_png
from metamap.traffic.data import TrafficData
from metamap.traffic.experiment import META_METHODS, SIMPLE_BASELINES


def error_by_horizon(
    mae_by_step: dict[str, Sequence[float]], path: Path, title: str = "", step_minutes: int = 5, units: str = "mph"
) -> Path:
    """MAE against forecast horizon, one line per method (``"maml"`` or ``"graph/maml"``): meta-learners solid,
    learned baselines dashed, classical ones dotted, each in its own colour, the legend beside the axes in the
    order of the error at the longest horizon."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    colours = plt.get_cmap("tab20").colors
    for index, (method, values) in enumerate(sorted(mae_by_step.items(), key=lambda kv: kv[1][-1])):
        minutes = [step_minutes * (i + 1) for i in range(len(values))]
        kind = method.rsplit("/", 1)[-1]
        style = "-" if kind in META_METHODS else ":" if kind in SIMPLE_BASELINES else "--"
        ax.plot(minutes, values, style, marker="o", markersize=3, color=colours[index % len(colours)], label=method)
    ax.set_xlabel("horizon (minutes)")
    ax.set_ylabel(f"masked MAE ({units})" if units else "masked MAE")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return save_png(fig, path)


def forecasts_vs_truth(
    times: np.ndarray,
    truth: torch.Tensor,
    observed: torch.Tensor,
    predictions: dict[str, torch.Tensor],
    sensor_names: Sequence[str],
    path: Path,
    step_minutes: int = 5,
    days: int = 3,
    units: str = "mph",
) -> Path:
    """For a few sensors: the readings and each method's forecast made the longest horizon earlier, over the
    first ``days`` days of the windows (so that a day's shape stays readable on a long test period).

    ``times [W]`` are the origins' timestamps, ``step_minutes`` apart; ``truth``, predictions
    ``[n, W, horizon]``; ``observed`` bool ``[n, W, horizon]`` (False: no reading, not drawn).
    """
    plt = pyplot()
    n, horizon = len(sensor_names), truth.shape[-1]
    shown = slice(0, days * 24 * 60 // step_minutes)
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.4 * n), sharex=True, squeeze=False)
    valid_times = times[shown] + np.timedelta64(step_minutes * horizon, "m")
    for row, (ax, name) in enumerate(zip(axes[:, 0], sensor_names)):
        last = observed[row, shown, -1].numpy()
        ax.plot(
            valid_times, np.where(last, truth[row, shown, -1].numpy(), np.nan), color="black", lw=1.2, label="observed"
        )
        for method, prediction in predictions.items():
            ax.plot(valid_times, prediction[row, shown, -1].numpy(), lw=0.9, label=method)
        ax.set_ylabel(units)
        ax.set_title(f"sensor {name}: forecast {duration_label(step_minutes * horizon)} ahead", fontsize=9)
    axes[0, 0].legend(fontsize=7, ncol=4)
    fig.autofmt_xdate()
    fig.tight_layout()
    return save_png(fig, path)


def target_forecasts(
    target, predictions: dict[str, torch.Tensor], shown: torch.Tensor, path: Path, units: str = "mph"
) -> Path:
    """:func:`forecasts_vs_truth` for the sensors ``shown`` (indices into ``target.nodes``) of an
    :class:`~metamap.traffic.experiment.Target`; ``predictions`` are ``[n, W, horizon]`` for all its sensors."""
    data = target.features.data
    return forecasts_vs_truth(
        data.times[target.test_origins.numpy()],
        target.truth[shown],
        target.observed[shown],
        {m: p[shown] for m, p in predictions.items()},
        [data.sensor_ids[int(target.nodes[i])] for i in shown],
        path,
        step_minutes=data.step_minutes,
        units=units,
    )


def latest_forecasts(
    data: TrafficData,
    forecasts: dict[str, torch.Tensor],
    valid: np.ndarray,
    shown: np.ndarray,
    path: Path,
    units: str = "",
) -> Path:
    """The last readings of the sensors ``shown`` (indices) and the forecasts after them: three days (the
    daily rhythm the forecast continues), or six times the forecast's length where that is longer.

    ``forecasts``: ``{method: [N, H]}`` for every sensor, at the times ``valid [H]`` after the file's end.
    """
    plt = pyplot()
    recent = slice(max(0, data.n_steps - max(3 * data.steps_per_day, 6 * len(valid))), data.n_steps)
    fig, axes = plt.subplots(len(shown), 1, figsize=(9, 2.4 * len(shown)), sharex=True, squeeze=False)
    for ax, sensor in zip(axes[:, 0], shown):
        readings = np.where(data.mask[recent, sensor], data.values[recent, sensor], np.nan)
        ax.plot(data.times[recent], readings, color="black", lw=1.0, label="observed")
        for method, forecast in forecasts.items():
            ax.plot(valid, forecast[sensor].numpy(), lw=1.4, marker=".", markersize=3, label=method)
        ax.axvline(data.times[-1], color="grey", lw=0.8, ls="--")
        ax.set_ylabel(units or "reading")
        ax.set_title(f"sensor {data.sensor_ids[sensor]}: forecasts from the last reading", fontsize=9)
    axes[0, 0].legend(fontsize=7, ncol=3)
    fig.autofmt_xdate()
    fig.tight_layout()
    return save_png(fig, path)
