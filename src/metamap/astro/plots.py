"""Photo-z pictures: z_phot against z_spec, and sigma_NMAD against the number of shots (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from metamap.plotting import pyplot, save_png


def photoz_figure(all_data: dict[str, Any] | None, fewshot: dict[str, Any] | None, path: Path) -> Path:
    """Left: all-data test galaxies; middle: 20-shot predictions on test cells; right: sigma_NMAD vs K."""
    plt = pyplot()

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    if all_data is not None:
        _scatter(
            axes[0],
            np.array(all_data["z_spec"]),
            np.array(all_data["z_phot"]),
            f"all data, {all_data['chosen']} (test split)",
        )
    if fewshot is not None:
        for (name, pairs), color in zip(fewshot["scatter_20shot"].items(), ("tab:blue", "tab:orange", "tab:green")):
            pairs = np.array(pairs)
            axes[1].scatter(pairs[0], pairs[1], s=3, alpha=0.4, color=color, label=name)
        _diagonal(axes[1], "20-shot, new sky cells (40 episodes)")
        axes[1].legend(fontsize=7, markerscale=3)
        shots = sorted(int(k) for k in fewshot["by_k"])
        for method in fewshot["by_k"][str(shots[0])]:
            means = [fewshot["by_k"][str(k)][method]["sigma_nmad"] for k in shots]
            errors = [fewshot["by_k"][str(k)][method]["sigma_nmad_ci95"] for k in shots]
            axes[2].errorbar(shots, means, yerr=errors, marker="o", capsize=3, label=method)
        if all_data is not None:
            axes[2].axhline(all_data["chosen_metrics"]["sigma_nmad"], color="black", ls="--", lw=1, label="all data")
            axes[2].axhline(
                1.2 * all_data["chosen_metrics"]["sigma_nmad"],
                color="gray",
                ls=":",
                lw=1,
                label="1.2 x all data (goal)",
            )
        axes[2].set_xscale("log")
        axes[2].set_xticks(shots, [str(k) for k in shots])
        axes[2].set_xlabel("K labelled galaxies of the new cell")
        axes[2].set_ylabel("sigma_NMAD (mean over episodes, 95% CI)")
        axes[2].legend(fontsize=6)
    fig.tight_layout()
    save_png(fig, path, dpi=110)
    return Path(path)


def _scatter(ax, z_spec: np.ndarray, z_phot: np.ndarray, title: str) -> None:
    ax.scatter(z_spec, z_phot, s=3, alpha=0.4)
    _diagonal(ax, title)


def _diagonal(ax, title: str) -> None:
    ax.plot([0, 0.4], [0, 0.4], color="black", lw=0.8)
    ax.plot([0, 0.4], [0.15, 0.15 + 1.15 * 0.4], color="gray", lw=0.6, ls=":")
    ax.plot([0, 0.4], [-0.15, -0.15 + 0.85 * 0.4], color="gray", lw=0.6, ls=":")
    ax.set_xlim(0, 0.4)
    ax.set_ylim(0, 0.4)
    ax.set_xlabel("z_spec")
    ax.set_ylabel("z_phot")
    ax.set_title(title, fontsize=9)
