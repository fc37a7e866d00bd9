"""The augmentation benchmark's figure: MSE ratios with CIs, and real vs synthetic draws."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from metamap.physics.family import HEAT_POSITIONS, HEAT_TIMES
from metamap.physics.systems import get_system
from metamap.plotting import pyplot, save_png

COLOURS = {"real": "black", "diffusion": "tab:blue", "gaussian": "tab:orange"}


def ablation_figure(
    ratios: dict[str, dict[str, dict[str, list[float]]]], examples: dict[str, dict[str, Any]], path: Path
) -> Path:
    """Top: per panel (physics system or traffic), error ratio with / without augmentation, mean and 95% CI
    over seeds, per condition and method (``ratios[panel][condition][method] = [mean, ci]``). Bottom: three
    real functions (black) and three draws of each generator, seed 0 (``examples[panel][source] = [3, ...]``).
    """
    plt = pyplot()
    panels = list(ratios)
    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 7.2), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        _ratio_bars(ax, panel, ratios[panel])
    for ax, panel in zip(axes[1], panels):
        _draws(ax, panel, examples[panel])
    axes[1][0].legend(fontsize=7)
    fig.tight_layout()
    return save_png(fig, path, dpi=100)


def _ratio_bars(ax, panel: str, cells: dict[str, dict[str, list[float]]]) -> None:
    conditions = list(cells)
    methods = list(next(iter(cells.values())))
    width = 0.8 / len(methods)
    for j, method in enumerate(methods):
        means = [cells[c][method][0] for c in conditions]
        cis = [np.nan_to_num(cells[c][method][1]) for c in conditions]
        ax.bar(np.arange(len(conditions)) + j * width, means, width, yerr=cis, capsize=3, label=method)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.axhline(0.95, color="gray", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(conditions)) + width * (len(methods) - 1) / 2)
    ax.set_xticklabels(conditions, fontsize=8)
    ax.set_title(f"{panel}: error with / without", fontsize=9)
    ax.legend(fontsize=7)


def _draws(ax, panel: str, sources: dict[str, Any]) -> None:
    if panel == "traffic_p1":
        axis, label, pick = None, "step of the 5 training days (scaled speed)", None
    else:
        system = get_system(panel)
        if system.n_in == 2:  # heat: u(x) at t = t_max / 4
            row = (HEAT_TIMES - 1) // 4
            pick = slice(row * HEAT_POSITIONS, (row + 1) * HEAT_POSITIONS)
            axis, label = np.linspace(0, 1, HEAT_POSITIONS + 2)[1:-1], "x (t = t_max / 4)"
        else:
            pick, label = slice(None), "t (first output)"
            axis = np.linspace(0, system.t_max, len(sources["real"][0]))
    for source, curves in sources.items():
        for i, curve in enumerate(np.asarray(curves)):
            values = curve if pick is None else curve[pick, 0]
            ax.plot(
                np.arange(len(values)) if axis is None else axis,
                values,
                color=COLOURS.get(source),
                lw=1,
                alpha=0.8,
                label=source if i == 0 else None,
            )
    ax.set_title(f"{panel}: real vs synthetic", fontsize=9)
    ax.set_xlabel(label, fontsize=8)
