"""Throughput of the methods: calibrated repetitions, measured in rounds of rotating order."""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from metamap.bench.speed.inputs import META_BATCH
from metamap.bench.speed.methods import Method
from metamap.tasks import Episode

MethodKey = tuple[str, int]  # (method name, inner steps)


def run_steps(method: Method, episodes: Sequence[Episode], n: int, offset: int = 0) -> float:
    """Seconds for ``n`` meta-steps, cycling through ``episodes`` from ``offset``."""
    gc.collect()
    start = time.perf_counter()
    for i in range(n):
        method.step(episodes[(offset + i) % len(episodes)])
    return time.perf_counter() - start


def calibrate(method: Method, episodes: Sequence[Episode], mode: dict[str, Any]) -> int:
    """Warm up, then choose the number of meta-steps that takes about ``target_s``."""
    run_steps(method, episodes, mode["warmup_steps"])
    probe = max(2, mode["min_steps"])
    per_step = run_steps(method, episodes, probe) / probe
    return int(min(5000, max(mode["min_steps"], math.ceil(mode["target_s"] / max(per_step, 1e-9)))))


def time_all(
    methods: dict[MethodKey, Method],
    episodes: Sequence[Episode],
    mode: dict[str, Any],
    progress: Callable[[str], None],
) -> dict[MethodKey, dict[str, Any]]:
    """Tasks/s of every method (median, min, max and each round) over ``mode["rounds"]`` rotating rounds."""
    keys = list(methods)
    steps = {key: calibrate(methods[key], episodes, mode) for key in keys}
    samples: dict[MethodKey, list[float]] = {key: [] for key in keys}
    for r in range(mode["rounds"]):
        order = keys[r % len(keys) :] + keys[: r % len(keys)]
        for key in order:
            n = steps[key]
            seconds = run_steps(methods[key], episodes, n, offset=r * 7)
            samples[key].append(n * META_BATCH / seconds)
        progress(f"round {r + 1}/{mode['rounds']} done")
    return {key: _throughput(samples[key], steps[key]) for key in keys}


def _throughput(values: list[float], steps: int) -> dict[str, Any]:
    """The timing record of one method: tasks/s ``values`` of each round, ``steps`` meta-steps per measurement."""
    return {
        "tasks_per_s": {"median": statistics.median(values), "min": min(values), "max": max(values)},
        "tasks_per_s_rounds": values,
        "meta_steps_per_measurement": steps,
        "ms_per_meta_step_median": 1000.0 * META_BATCH / statistics.median(values),
    }
