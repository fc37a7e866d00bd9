"""Pictures of the patterns found: the days nearest each prototype, and the sensors' majority patterns on a map."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from metamap.plotting import pyplot, save_png
from metamap.traffic.data import TrafficData
from metamap.traffic.patterns.labels import Labelling


def plot_prototypes(
    profiles: np.ndarray,
    assigned: np.ndarray,
    rule: np.ndarray,
    classes: Sequence[int],
    labelling: Labelling,
    path: Path,
    title: str,
) -> None:
    """Grid of panels, one per pattern: mean and interquartile band of the days assigned to its prototype,
    with the mean of the days the weak labels give it (dashed). ``profiles [D, B]``; ``assigned``, ``rule``
    ``int64 [D]`` indices into ``labelling.names``.
    """
    plt = pyplot()
    cols = min(3, len(classes))
    rows = -(-len(classes) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), sharex=True, sharey=True, squeeze=False)
    hours = np.arange(profiles.shape[1]) * 24.0 / profiles.shape[1]
    for ax, c in zip(axes.flat, classes):
        mine = profiles[assigned == c]
        if len(mine):
            low, high = np.percentile(mine, [25, 75], axis=0)
            ax.fill_between(hours, low, high, color=_colour(c), alpha=0.3, label="assigned: 25-75%")
            ax.plot(hours, mine.mean(0), color=_colour(c), label="assigned: mean")
        if (rule == c).any():
            ax.plot(hours, profiles[rule == c].mean(0), "k--", lw=1, label="weak label: mean")
        ax.set_title(f"{labelling.names[c]} ({len(mine)} days)")
        if labelling.threshold is not None:
            ax.axhline(labelling.threshold, color="grey", lw=0.5)
        ax.set_xticks(range(0, 25, 6))
    for ax in list(axes.flat)[len(classes) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("hour of day")
    for ax in axes[:, 0]:
        ax.set_ylabel(labelling.profile_axis)
    axes.flat[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, path)


def plot_sensor_map(coords: np.ndarray, patterns: np.ndarray, names: Sequence[str], path: Path, title: str) -> None:
    """Scatter of sensors at ``coords [N, 2]`` (lat, lon in degrees) coloured by ``patterns int64 [N]`` (indices
    into ``names``; -1: none)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    for c in np.unique(patterns):
        at = patterns == c
        name, colour = ("no whole day", "lightgrey") if c < 0 else (names[c], _colour(c))
        ax.scatter(coords[at, 1], coords[at, 0], s=18, color=colour, label=f"{name} ({int(at.sum())})")
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)


def _colour(pattern: int) -> str:
    return f"C{pattern}"


def draw_plots(
    target: TrafficData,
    profiles: np.ndarray,
    assigned: np.ndarray,
    rule: np.ndarray,
    classes: Sequence[int],
    majority: np.ndarray,
    out_dir: Path,
    k: int,
    labelling: Labelling,
) -> tuple[dict[str, str | None], list[str]]:
    """Draw the prototype grid and, where the target has coordinates, the sensor map; returns paths and notes."""
    prototypes_png = out_dir / "prototypes.png"
    plots: dict[str, str | None] = {"prototypes": str(prototypes_png), "map": None}
    plot_prototypes(
        profiles,
        assigned,
        rule,
        classes,
        labelling,
        prototypes_png,
        f"{target.name}: days nearest each prototype ({k} labelled per pattern)",
    )
    if target.coords is None:
        return plots, [f"target {target.name!r} has no sensor coordinates: no map drawn"]
    map_png = out_dir / "sensor_map.png"
    plots["map"] = str(map_png)
    plot_sensor_map(target.coords, majority, labelling.names, map_png, f"{target.name}: majority pattern per sensor")
    return plots, []
