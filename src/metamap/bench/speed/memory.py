"""Tensor memory of one meta-step, read from the torch profiler's allocation events."""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from typing import Any

from metamap.bench.speed.failures import first_line
from metamap.bench.speed.methods import Method
from metamap.bench.speed.timing import MethodKey
from metamap.tasks import Episode


def tensor_peak_mib(method: Method, episode: Episode) -> tuple[float | None, str | None]:
    """Peak tensor memory (MiB) of one meta-step above the level at its start; ``(None, why)`` if unreadable.

    The level at the start is taken after the previous step's gradients are
    released (``zero_grad(set_to_none=True)``), i.e. the meta-parameters and
    optimizer state are not counted; everything the step allocates is.

    Read from the torch profiler's allocation events (``profile_memory=True``):
    every CPU tensor allocation and free during the step, in time order; the
    running sum's maximum is the step's high-water mark. Python objects (e.g.
    higher's patched module copies) are not tensors and are not counted.
    """
    try:
        from torch._C._profiler import _EventType
        from torch.profiler import ProfilerActivity, profile

        # release the previous step's gradients first: the profiler cannot see frees of blocks
        # allocated before it started, and they would inflate the level
        method.optimizer.zero_grad(set_to_none=True)
        gc.collect()
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            method.step(episode)

        def walk(nodes: Iterable[Any]) -> Iterator[Any]:
            for node in nodes:
                yield node
                yield from walk(node.children)

        allocs = sorted(
            (n for n in walk(prof.profiler.kineto_results.experimental_event_tree()) if n.tag == _EventType.Allocation),
            key=lambda n: n.start_time_ns,
        )
        if not allocs:
            return None, "the profiler recorded no allocation events"
        level = peak = 0
        for node in allocs:
            level += node.extra_fields.alloc_size
            peak = max(peak, level)
        return peak / 2**20, None
    except Exception as exc:  # noqa: BLE001 - the profiler's event tree is an experimental API
        return None, f"{type(exc).__name__}: {first_line(exc)}"


def measure_memory(methods: dict[MethodKey, Method], episode: Episode) -> dict[MethodKey, dict[str, Any]]:
    """``{"peak_tensor_mib": ...}`` per method from one (warm) meta-step on ``episode``; ``error`` where unreadable."""
    memory: dict[MethodKey, dict[str, Any]] = {}
    for key, method in methods.items():
        peak, error = tensor_peak_mib(method, episode)
        memory[key] = {"peak_tensor_mib": peak} if error is None else {"peak_tensor_mib": None, "error": error}
    return memory
