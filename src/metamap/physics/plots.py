"""Trajectories of a test system with each method's adapted prediction (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from metamap.physics.family import HEAT_POSITIONS, HEAT_TIMES
from metamap.physics.systems import get_system
from metamap.plotting import pyplot, save_png

STYLE = {
    "maml": "tab:blue",
    "metasgd": "tab:cyan",
    "pretrain_finetune": "tab:orange",
    "scratch": "tab:gray",
    "least_squares": "tab:green",
}


def trajectory_figure(results: dict[str, dict[str, Any]], path: Path) -> Path:
    """One panel per system: truth, the K noisy observations, and every method's prediction."""
    plt = pyplot()

    fig, axes = plt.subplots(1, len(results), figsize=(4.8 * len(results), 3.8), squeeze=False)
    for ax, (name, result) in zip(axes[0], results.items()):
        system, example = get_system(name), result["examples"]
        x_query, truth = np.array(example["x_query"])[0], np.array(example["truth"])[0]
        if system.n_in == 2:  # heat: u(x) at one time slice, t = t_max / 4
            slice_ = (HEAT_TIMES - 1) // 4
            rows = slice(slice_ * HEAT_POSITIONS, (slice_ + 1) * HEAT_POSITIONS)
            axis, label = (x_query[rows, 1] + 1) / 2, "x (t = t_max / 4)"
        else:
            rows = slice(None)
            axis, label = (x_query[:, 0] + 1) / 2 * system.t_max, "t"
        for out in range(truth.shape[-1]):
            ax.plot(axis, truth[rows, out], color="black", lw=2, label="truth" if out == 0 else None)
            for method, pred in example["predictions"].items():
                ax.plot(
                    axis,
                    np.array(pred)[0][rows, out],
                    color=STYLE.get(method),
                    lw=1.2,
                    label=method if out == 0 else None,
                )
            if system.n_in == 1:
                xs, ys = np.array(example["x_support"])[0], np.array(example["y_support"])[0]
                ax.scatter(
                    (xs[:, 0] + 1) / 2 * system.t_max,
                    ys[:, out],
                    color="red",
                    zorder=5,
                    s=18,
                    label=f"K={len(xs)} observations" if out == 0 else None,
                )
        best = result["best_meta_learner_on_val"]
        ratio = result["mse"][best]["mean"] / result["mse"]["pretrain_finetune"]["mean"]
        ax.set_title(f"{name}: MSE {best} / pretrain+finetune = {ratio:.2f}", fontsize=9)
        ax.set_xlabel(label)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path, dpi=110)
    return Path(path)
