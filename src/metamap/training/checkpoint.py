"""Checkpoints: tensors in safetensors, everything else in JSON, written atomically.

A checkpoint is a folder ``<run>/checkpoints/step-000123/`` holding
``tensors.safetensors`` (learner state, optimizer state, random-generator
states) and ``state.json`` (step, config, optimizer hyper-parameters, any
extra metadata). It is written to a hidden temporary folder and renamed into
place, then the text file ``<run>/checkpoints/latest`` is replaced atomically:
an interruption at any moment leaves the previous checkpoint intact. No
pickle is involved anywhere.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from metamap.errors import CheckpointError
from metamap.report import atomic_write_bytes

TENSORS = "tensors.safetensors"
STATE = "state.json"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """What a checkpoint holds once loaded."""

    step: int
    config: dict[str, Any]
    learner_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None
    generators: dict[str, torch.Tensor]
    extra: dict[str, Any]


def save_checkpoint(
    run_dir: Path,
    step: int,
    config: dict[str, Any],
    learner: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    generators: dict[str, torch.Tensor] | None = None,
    extra: dict[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write the checkpoint of ``step`` and point ``latest`` at it; keep the newest ``keep``."""
    folder = Path(run_dir) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:09d}"
    tmp = folder / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    tensors = {f"learner/{k}": v.detach().cpu().contiguous() for k, v in learner.state_dict().items()}
    optim_json = None
    if optimizer is not None:
        optim_tensors, optim_json = _flatten_optimizer(optimizer.state_dict())
        tensors.update(optim_tensors)
    for key, value in (generators or {}).items():
        tensors[f"rng/{key}"] = value.detach().cpu().contiguous()
    save_file(tensors, str(tmp / TENSORS))
    state = {
        "format_version": FORMAT_VERSION,
        "step": step,
        "config": config,
        "optimizer": optim_json,
        "extra": extra or {},
    }
    (tmp / STATE).write_text(json.dumps(state, indent=2))
    final = folder / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write_bytes(folder / "latest", name.encode())
    _prune(folder, keep)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The folder ``latest`` points at, or None if the run has no checkpoint yet."""
    pointer = Path(run_dir) / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    folder = pointer.parent / pointer.read_text().strip()
    if not folder.is_dir():
        raise CheckpointError(f"{pointer} points at {folder.name}, which does not exist")
    return folder


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint folder (or a run folder: its latest checkpoint)."""
    path = Path(path)
    if (path / "checkpoints").is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise CheckpointError(f"run folder {path} has no checkpoint yet")
        path = found
    tensor_file, state_file = path / TENSORS, path / STATE
    if not tensor_file.is_file() or not state_file.is_file():
        raise CheckpointError(f"{path} is not a metamap checkpoint: expected {TENSORS} and {STATE} in it")
    try:
        state = json.loads(state_file.read_text())
        tensors = load_file(str(tensor_file))
    except (json.JSONDecodeError, SafetensorError, OSError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt: {exc}") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path}: expected format_version {FORMAT_VERSION}, got {state.get('format_version')!r}"
        )
    groups = _group(tensors)
    optimizer_state = None
    if state.get("optimizer") is not None:
        optimizer_state = _unflatten_optimizer(groups.get("optim", {}), state["optimizer"])
    return Checkpoint(
        step=int(state["step"]),
        config=state["config"],
        learner_state=groups.get("learner", {}),
        optimizer_state=optimizer_state,
        generators=groups.get("rng", {}),
        extra=state.get("extra", {}),
    )


def load_learner_state(learner: torch.nn.Module, checkpoint: Checkpoint, source: str = "checkpoint") -> None:
    """Load weights, raising CheckpointError (not a torch error) if they belong to another model."""
    own = learner.state_dict()
    missing = sorted(set(own) - set(checkpoint.learner_state))
    unexpected = sorted(set(checkpoint.learner_state) - set(own))
    mismatched = [
        f"{k}: model {list(own[k].shape)} vs checkpoint {list(checkpoint.learner_state[k].shape)}"
        for k in sorted(set(own) & set(checkpoint.learner_state))
        if own[k].shape != checkpoint.learner_state[k].shape
    ]
    if missing or unexpected or mismatched:
        details = "; ".join(
            part
            for part in (
                f"missing {missing[:5]}" if missing else "",
                f"unexpected {unexpected[:5]}" if unexpected else "",
                f"shape mismatch {mismatched[:5]}" if mismatched else "",
            )
            if part
        )
        raise CheckpointError(f"{source} was written for another model: {details}")
    learner.load_state_dict(checkpoint.learner_state)


def _prune(folder: Path, keep: int) -> None:
    steps = sorted(p for p in folder.glob("step-*") if p.is_dir())
    for old in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def _group(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        head, _, rest = key.partition("/")
        groups.setdefault(head, {})[rest] = value
    return groups


def _flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state -> tensors ``optim/<param>/<name>`` and a JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, entries in state_dict["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{param_id}/{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        param_id, _, name = key.partition("/")
        state.setdefault(int(param_id), {})[name] = value
    for param_id, entries in rest.get("scalars", {}).items():
        state.setdefault(int(param_id), {}).update(entries)
    return {"state": dict(sorted(state.items())), "param_groups": rest["param_groups"]}
