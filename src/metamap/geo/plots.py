"""Pictures for gap-filling, forecasting and generation (matplotlib, Agg, PNG)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from metamap.plotting import pyplot, save_png

DIVERGING = ("RdBu_r", "coolwarm", "bwr", "seismic")  # colormaps shown on a scale symmetric about 0


def rank_histograms(histograms: Mapping[str, np.ndarray], path: Path) -> Path:
    """One bar panel per method: the truth's rank among M members (flat = calibrated)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(histograms), figsize=(3.2 * len(histograms), 2.8), squeeze=False)
    for ax, (name, counts) in zip(axes[0], histograms.items()):
        counts = np.asarray(counts, np.float64)
        ax.bar(np.arange(counts.size), counts / counts.sum(), color="tab:blue")
        ax.axhline(1 / counts.size, color="k", lw=0.8, ls="--")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("rank of truth")
    axes[0][0].set_ylabel("frequency")
    fig.tight_layout()
    return save_png(fig, path)


def spectra(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path, autocorr: Mapping[str, np.ndarray] | None = None
) -> Path:
    """Radially averaged power spectra (log-log) and, if given, autocorrelation against lag."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2 if autocorr else 1, figsize=(9 if autocorr else 4.5, 3.4), squeeze=False)
    for name, (k, p) in curves.items():
        axes[0][0].loglog(k, p, label=name)
    axes[0][0].xaxis.set_minor_formatter(pyplot().NullFormatter())
    axes[0][0].set_xlabel("wavenumber (cycles per grid step)")
    axes[0][0].set_ylabel("power")
    axes[0][0].legend(fontsize=8)
    if autocorr:
        for name, values in autocorr.items():
            axes[0][1].plot(np.arange(len(values)), values, marker=".", label=name)
        axes[0][1].set_xlabel("lag (grid steps)")
        axes[0][1].set_ylabel("autocorrelation")
        axes[0][1].legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)


def fields(
    panels: Sequence[tuple[str, np.ndarray]],
    path: Path,
    lat: np.ndarray,
    lon: np.ndarray,
    unit: str = "",
    own_scale: Sequence[tuple[str, np.ndarray, str]] = (),
) -> Path:
    """A row of maps ``[H, W]`` on one colour scale (NaN blank), north up; each of ``own_scale``
    ``(title, map, colormap)`` adds a map on its own scale after them (e.g. the ensemble standard deviation
    with ``viridis``; a diverging colormap such as ``RdBu_r`` gets a scale symmetric about 0, for errors)."""
    plt = pyplot()
    finite = np.concatenate([np.asarray(p, np.float64)[np.isfinite(p)] for _, p in panels])
    low, high = np.percentile(finite, [1, 99]) if finite.size else (0, 1)
    n = len(panels) + len(own_scale)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.6), squeeze=False)
    extent = (lon.min(), lon.max(), lat.min(), lat.max())

    def show(ax, title, values, **scale):
        image = np.asarray(values) if lat[0] > lat[-1] else np.asarray(values)[::-1]
        shown = ax.imshow(image, extent=extent, aspect="auto", **scale)
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        return shown

    for ax, (title, values) in zip(axes[0], panels):
        shown = show(ax, title, values, vmin=low, vmax=high, cmap="coolwarm")
    fig.colorbar(shown, ax=list(axes[0][: len(panels)]), shrink=0.8, label=unit)
    for ax, (title, values, cmap) in zip(axes[0][len(panels) :], own_scale):
        scale = {}
        if cmap in DIVERGING:
            limit = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
            scale = {"vmin": -limit, "vmax": limit}
        shown = show(ax, title, values, cmap=cmap, **scale)
        fig.colorbar(shown, ax=ax, shrink=0.8, label=unit)
    return save_png(fig, path)


def by_lead(curves: Mapping[str, Sequence[float]], leads: Sequence[int], path: Path, ylabel: str) -> Path:
    """A score against the forecast lead (hours), one line per method."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for name, values in curves.items():
        ax.plot(list(leads), list(values), marker="o", label=name)
    ax.set_xlabel("lead (h)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)
