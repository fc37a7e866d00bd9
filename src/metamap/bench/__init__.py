"""Benchmarks run by ``metamap bench NAME [--quick] --json PATH``.

Each benchmark is a module here with ``run(quick: bool, json_path: Path) -> dict``:
it writes a JSON whose ``"headline"`` object holds the named figures, prints a
table, and saves a PNG next to the JSON where a plot helps. ``benchmarks/``
at the repository root holds the recorded results (BENCHMARKS.md explains).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from metamap.errors import ConfigError

BENCHMARKS = (
    "sinusoid",
    "speed",
    "omniglot",
    "traffic",
    "geo",
    "kriging",
    "samplers",
    "energy",
    "astro",
    "physics",
    "mann",
    "augment",
    "safety",
)


def run_benchmark(name: str, quick: bool, json_path: Path) -> dict[str, Any]:
    """Run benchmark ``name``; returns its result dict (also written to ``json_path``)."""
    if name not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {name!r}; expected one of {', '.join(BENCHMARKS)}")
    module = importlib.import_module(f"metamap.bench.{name}")
    return module.run(quick=quick, json_path=Path(json_path))
