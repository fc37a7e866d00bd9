"""Matplotlib without a display, and PNGs written atomically (shared by every domain's plots)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metamap.report import atomic_write_bytes


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (imported on first use: the CLI stays light)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG to ``path`` (temporary file + rename), close it, and return the path."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    pyplot().close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def loss_curve(records: Sequence[dict[str, Any]], path: Path, key: str = "train_loss", ylabel: str = "loss") -> Path:
    """``records[i][key]`` against ``records[i]["step"]`` (a training log, e.g. ``metrics.jsonl``) as a PNG;
    a log scale when every value is positive."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    steps = [r["step"] for r in records if key in r]
    values = [r[key] for r in records if key in r]
    ax.plot(steps, values, marker="." if len(values) < 50 else None)
    if values and min(values) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    return save_png(fig, path)
