"""The speed benchmark's printed table and its PNG (tasks/s per method, log scale)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metamap.bench.speed.inputs import META_BATCH, METHODS
from metamap.bench.speed.summary import Results
from metamap.plotting import pyplot, save_png
from metamap.report import format_table


def results_table(results: Results) -> str:
    """One row per (inner steps, method): tasks/s median, min, max, metamap's ratio to it, tensor peak."""
    header = ["method", "inner steps", "tasks/s median", "min", "max", "metamap x", "tensor peak MiB"]
    rows = []
    for k, per_method in results.items():
        ours = per_method["metamap"]["tasks_per_s"]["median"]
        for m, r in per_method.items():
            if not r["available"]:
                rows.append([m, k, "n/a", "", "", "", ""])
                continue
            t = r["tasks_per_s"]
            rows.append(
                [m, k, t["median"], t["min"], t["max"], ours / t["median"], _num(r["memory"]["peak_tensor_mib"])]
            )
    return format_table(header, rows)


def _num(value: Any) -> Any:
    return "n/a" if value is None else float(value)


def plot_throughput(results: Results, path: Path) -> None:
    """Bars of median tasks/s (min-max error bars) per method, one colour per inner-step setting, saved to ``path``."""
    fig, ax = pyplot().subplots(figsize=(9.5, 4.5))
    names = [m for m in METHODS if any(results[k][m]["available"] for k in results)]
    width = 0.8 / len(results)
    top = 0.0
    for i, (k, per_method) in enumerate(results.items()):
        xs, med, lo, hi = [], [], [], []
        for j, m in enumerate(names):
            r = per_method[m]
            if not r["available"]:
                continue
            t = r["tasks_per_s"]
            xs.append(j + (i - (len(results) - 1) / 2) * width)
            med.append(t["median"])
            lo.append(t["median"] - t["min"])
            hi.append(t["max"] - t["median"])
        label = f"{k} inner step{'s' if k != '1' else ''}"
        top = max([top, *(m + h for m, h in zip(med, hi))])
        bars = ax.bar(xs, med, width, yerr=[lo, hi], capsize=3, label=label)
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in med], fontsize=7, padding=2)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("tasks / s, log scale (median; bars: min-max over rounds)")
    ax.set_title(f"Second-order MAML meta-training, sinusoid MLP 1-40-40-1, {META_BATCH} tasks/batch")
    ax.set_ylim(top=top * 4)
    ax.legend(loc="upper center", ncols=2)
    ax.grid(axis="y", alpha=0.3, which="both")
    fig.tight_layout()
    save_png(fig, path, dpi=120)
