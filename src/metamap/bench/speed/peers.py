"""Which peer libraries (higher, torchopt) are installed and importable here, and why not where not."""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any

from metamap.bench.speed.failures import first_line
from metamap.bench.speed.inputs import LIBRARY, PEERS


def peer_status() -> dict[str, dict[str, Any]]:
    """Per library (higher, torchopt): available, version, and why not where it is not."""
    status: dict[str, dict[str, Any]] = {}
    for lib in ("higher", "torchopt"):
        entry: dict[str, Any] = {"available": False, "version": None, "reason": None}
        try:
            entry["version"] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            entry["reason"] = f"{lib} is not installed (pip install 'metamap[bench]')"
            status[lib] = entry
            continue
        try:
            importlib.import_module(lib)
        except Exception as exc:  # noqa: BLE001 - any import failure makes the peer unavailable
            entry["reason"] = f"import {lib} failed: {type(exc).__name__}: {first_line(exc)}"
            status[lib] = entry
            continue
        entry["available"] = True
        if lib == "torchopt":
            entry.update(_torchopt_extension())
        status[lib] = entry
    return status


def unavailable_peers(status: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Peer method -> why it cannot run, for the peers whose library :func:`peer_status` found unavailable."""
    return {name: status[LIBRARY[name]]["reason"] for name in PEERS if not status[LIBRARY[name]]["available"]}


def _torchopt_extension() -> dict[str, Any]:
    """Whether torchopt's compiled ``_C`` loads against this torch, and what stands in for it."""
    info: dict[str, Any] = {}
    try:
        importlib.import_module("torchopt._C")
        info["compiled_extension"] = "loaded"
    except Exception as exc:  # noqa: BLE001
        info["compiled_extension"] = f"failed to load: {type(exc).__name__}: {first_line(exc)[:300]}"
        try:
            importlib.import_module("torchopt.accelerated_op._src.adam_op")
            fallback = "torchopt.accelerated_op._src.adam_op (pure Python) is used instead"
        except Exception as exc2:  # noqa: BLE001
            fallback = f"no fallback importable: {type(exc2).__name__}: {first_line(exc2)}"
        info["fallback"] = fallback
    info["extension_used_here"] = (
        "no: the extension only implements the fused (accelerated) Adam; this benchmark uses "
        "torchopt's SGD for the inner loop and torch.optim.Adam for the outer step"
    )
    return info
