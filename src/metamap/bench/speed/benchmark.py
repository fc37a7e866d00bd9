"""The speed benchmark's run: check the methods agree, time them, read their memory, write the record."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from metamap.arguments import add_json_flag
from metamap.bench.speed.agreement import check_all_methods
from metamap.bench.speed.inputs import INNER_STEPS, METHODS, THREADS, initial_state, make_episodes, repetitions
from metamap.bench.speed.memory import measure_memory
from metamap.bench.speed.methods import build_method
from metamap.bench.speed.peers import peer_status, unavailable_peers
from metamap.bench.speed.plots import plot_throughput, results_table
from metamap.bench.speed.summary import (
    METHOD_DESCRIPTIONS,
    Results,
    collect_results,
    headline_and_summary,
    settings_record,
)
from metamap.bench.speed.timing import time_all
from metamap.report import machine, write_json


def run(quick: bool, json_path: Path, *, threads: int = THREADS) -> dict[str, Any]:
    """Run the benchmark, print a table, write ``json_path`` and a PNG beside it; returns the result."""
    json_path = Path(json_path)
    mode = repetitions(quick)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run(quick, json_path, mode, threads)
    finally:
        torch.set_num_threads(previous_threads)


def _run(quick: bool, json_path: Path, mode: dict[str, Any], threads: int) -> dict[str, Any]:
    started = time.perf_counter()
    progress = _progress(started)
    peers = peer_status()
    unavailable = unavailable_peers(peers)
    state = initial_state()
    episodes = make_episodes()

    check = check_all_methods(state, episodes[0], unavailable)
    _report_check(check, unavailable, progress)

    timed = [m for m in METHODS if m not in unavailable]
    methods = {(m, k): build_method(m, state, k) for k in INNER_STEPS for m in timed}
    timings = time_all(methods, episodes, mode, progress)
    memory = measure_memory(methods, episodes[0])
    progress("memory done")

    results = collect_results(timings, memory, unavailable)
    headline, summary = headline_and_summary(results, unavailable)
    payload = {
        "benchmark": "speed",
        "quick": quick,
        "headline": headline,
        "summary": summary,
        "settings": settings_record(threads, mode),
        "methods": METHOD_DESCRIPTIONS,
        "peers": peers,
        "gradient_check": check,
        "results": results,
        "machine": machine(),
        "wall_s": time.perf_counter() - started,
    }
    _write(json_path, payload, results, headline, progress)
    return payload


def _progress(started: float) -> Callable[[str], None]:
    """A printer of progress lines stamped with the seconds since ``started`` (``time.perf_counter``)."""

    def progress(msg: str) -> None:
        print(f"[speed {time.perf_counter() - started:6.1f}s] {msg}", flush=True)

    return progress


def _report_check(check: dict[str, Any], unavailable: dict[str, str], progress: Callable[[str], None]) -> None:
    """One progress line: did every method agree, and which are not timed and why."""
    progress(
        "meta-gradient check: "
        + ("every method that ran agrees" if check["ok"] else "disagreements")
        + "".join(f"; {m} not timed: {why}" for m, why in unavailable.items())
    )


def _write(
    json_path: Path,
    payload: dict[str, Any],
    results: Results,
    headline: dict[str, Any],
    progress: Callable[[str], None],
) -> None:
    """Write the JSON, print the table and headline, save the PNG beside the JSON."""
    write_json(json_path, payload)
    print(results_table(results))
    print("headline:", json.dumps(headline))
    png = json_path.with_suffix(".png")
    plot_throughput(results, png)
    progress(f"wrote {json_path} and {png}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m metamap.bench.speed",
        description="The speed benchmark: meta-training throughput of second-order MAML.",
    )
    parser.add_argument("--quick", action="store_true")
    add_json_flag(parser, default=Path("speed.json"))
    parser.add_argument("--threads", type=int, default=THREADS)
    args = parser.parse_args(argv)
    run(args.quick, args.json, threads=args.threads)
    return 0
