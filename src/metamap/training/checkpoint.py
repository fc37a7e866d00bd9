"""Checkpoints: tensors in safetensors, everything else in JSON, written atomically, verified on load.

A checkpoint is a folder ``<run>/checkpoints/step-000000123/`` holding
``tensors.safetensors`` (learner state, optimizer state, random-generator
states) and ``state.json`` (step, config, optimizer hyper-parameters, any
extra metadata, and the SHA-256 of the tensors file). The text file
``<run>/checkpoints/latest`` names the checkpoint to resume from. A step
saved again gets the next free name ``step-000000123-1`` (``-2``, ...), so
the checkpoint ``latest`` names is never touched while its replacement is
written.

:func:`save_checkpoint` writes, in this order, each file and folder synced
to disk: both files into a hidden ``.tmp-<name>-<pid>`` folder; that folder
renamed into place; ``latest`` replaced (atomic rename) by the new name;
then the checkpoint of the same step it supersedes, and checkpoints beyond
the newest ``keep`` by step number, are moved aside (``.tmp-trash-*``) and
deleted. A kill at any moment leaves ``latest`` naming a complete
checkpoint (or no ``latest`` at all before the first one); the hidden
leftovers are removed by the next
:func:`metamap.training.run_folder.claim_run_folder`.

:func:`load_checkpoint` checks ``state.json`` (an object with a whole
``step``, a ``config`` object, ...), the tensors file against its recorded
SHA-256, and that the learner's weights are finite; every failure is one
:class:`~metamap.errors.CheckpointError` line naming the file. No pickle is
involved anywhere.

:func:`fault_point` marks each write above for the crash tests of
:mod:`metamap.bench.faults`: with ``METAMAP_FAULT_POINT=<name>`` (or
``<name>#<k>`` for its k-th occurrence) in the environment the process kills
itself with SIGKILL there; without it the call does nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from metamap.errors import CheckpointError
from metamap.report import atomic_write_bytes

TENSORS = "tensors.safetensors"
STATE = "state.json"
POINTER = "latest"
FORMAT_VERSION = 2  # 2: state.json records "tensors_sha256"; version 1 (without it) is still read
FAULT_ENV = "METAMAP_FAULT_POINT"
_NAME = re.compile(r"step-(\d{9,})(?:-(\d+))?")
_fault_hits: dict[str, int] = {}


@dataclass
class Checkpoint:
    """What a checkpoint holds once loaded."""

    step: int
    config: dict[str, Any]
    learner_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None
    generators: dict[str, torch.Tensor]
    extra: dict[str, Any]


def fault_point(name: str) -> None:
    """Kill this process with SIGKILL when ``$METAMAP_FAULT_POINT`` is ``name`` or ``name#<this occurrence>``."""
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    _fault_hits[name] = hits = _fault_hits.get(name, 0) + 1
    if wanted in (name, f"{name}#{hits}"):
        os.kill(os.getpid(), signal.SIGKILL)


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
    """Write the checkpoint of ``step``, point ``latest`` at it, keep the newest ``keep`` (all when < 1).

    The checkpoint just written is always kept; the others are ranked by step
    number. Returns the new checkpoint folder.
    """
    folder = Path(run_dir) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    kind = "resave" if step in _steps(folder).values() else "save"
    name = _free_name(folder, step)
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
    data = save_safetensors(tensors)
    _write_synced(tmp / TENSORS, data)
    fault_point(f"{kind}:tensors-written")
    state = {
        "format_version": FORMAT_VERSION,
        "step": step,
        "config": config,
        "optimizer": optim_json,
        "extra": extra or {},
        "tensors_sha256": hashlib.sha256(data).hexdigest(),
    }
    _write_synced(tmp / STATE, json.dumps(state, indent=2).encode())
    fault_point(f"{kind}:state-written")
    _sync_folder(tmp)
    final = folder / name
    os.replace(tmp, final)
    _sync_folder(folder)
    fault_point(f"{kind}:renamed")
    atomic_write_bytes(folder / POINTER, name.encode())
    _sync_folder(folder)
    fault_point(f"{kind}:pointer-switched")
    _prune(folder, name, keep, kind)
    fault_point(f"{kind}:pruned")
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The folder ``latest`` points at, or None if the run has no checkpoint yet."""
    pointer = Path(run_dir) / "checkpoints" / POINTER
    if not pointer.is_file():
        return None
    try:
        name = pointer.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{pointer} is unreadable: {exc}") from None
    if not _NAME.fullmatch(name):
        raise CheckpointError(
            f"{pointer}: expected the name of a checkpoint folder (step-000000123), got {name[:40]!r}"
        )
    folder = pointer.parent / name
    if not folder.is_dir():
        raise CheckpointError(f"{pointer} points at {name}, which does not exist")
    return folder


def add_to_latest_config(run_dir: Path, key: str, value: Any) -> Path:
    """Set ``config[key] = value`` in the ``state.json`` of the run's latest checkpoint (atomic rewrite).

    For what is known only once training has finished (settings chosen on
    validation data); the tensors file and its recorded SHA-256 are untouched.
    Returns the checkpoint folder; CheckpointError when the run has none.
    """
    folder = latest_checkpoint(run_dir)
    if folder is None:
        raise CheckpointError(f"{run_dir}: no checkpoint to add {key!r} to")
    state_file = folder / STATE
    try:
        state = json.loads(state_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise CheckpointError(f"checkpoint {folder} is corrupt: {STATE}: {exc}") from None
    _check_state(state, state_file)
    state["config"][key] = value
    atomic_write_bytes(state_file, json.dumps(state, indent=2).encode())
    return folder


def load_checkpoint(path: Path) -> Checkpoint:
    """Read and verify a checkpoint folder (or a run folder: its latest checkpoint)."""
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
        data = tensor_file.read_bytes()
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt: {state_file.name}: {exc}") from None
    _check_state(state, state_file)
    recorded = state.get("tensors_sha256")
    if recorded is not None and hashlib.sha256(data).hexdigest() != recorded:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: {tensor_file} does not match the SHA-256 recorded in {STATE}"
        )
    try:
        tensors = load_safetensors(data)
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt: {tensor_file.name}: {exc}") from None
    groups = _group(tensors)
    learner_state = groups.get("learner", {})
    bad = [k for k, v in learner_state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"checkpoint {path}: learner weights {bad[:5]} in {TENSORS} hold NaN or inf")
    optimizer_state = None
    if state["optimizer"] is not None:
        try:
            optimizer_state = _unflatten_optimizer(groups.get("optim", {}), state["optimizer"])
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{state_file}: the optimizer entry is malformed ({exc!r})") from None
    return Checkpoint(
        step=state["step"],
        config=state["config"],
        learner_state=learner_state,
        optimizer_state=optimizer_state,
        generators=groups.get("rng", {}),
        extra=state["extra"],
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


def _check_state(state: Any, where: Path) -> None:
    """One-line CheckpointError unless ``state`` has the layout :func:`save_checkpoint` writes."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{where}: expected a JSON object, got {_kind(state)}")
    version = state.get("format_version")
    if version not in (1, FORMAT_VERSION):
        raise CheckpointError(f"{where}: expected format_version 1 or {FORMAT_VERSION}, got {version!r}")
    step = state.get("step")
    if type(step) is not int or step < 0:
        raise CheckpointError(f"{where}: expected 'step' to be a whole number >= 0, got {_kind(step)} {step!r:.40}")
    expected = {"config": (dict,), "optimizer": (dict, type(None)), "extra": (dict,)}
    for key, types in expected.items():
        if not isinstance(state.get(key), types):
            wanted = "an object" + (" or null" if type(None) in types else "")
            raise CheckpointError(f"{where}: expected '{key}' to be {wanted}, got {_kind(state.get(key))}")
    digest = state.get("tensors_sha256")
    if version == FORMAT_VERSION and not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
        raise CheckpointError(f"{where}: expected 'tensors_sha256' to be 64 hex digits, got {digest!r:.70}")


def _kind(value: Any) -> str:
    names = {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "nothing (missing or null)",
    }
    return names.get(type(value), type(value).__name__)


def _steps(folder: Path) -> dict[str, int]:
    """Checkpoint folder name -> its step, for every ``step-*`` folder in ``folder``."""
    found = {}
    for entry in folder.iterdir():
        match = _NAME.fullmatch(entry.name)
        if match and entry.is_dir():
            found[entry.name] = int(match.group(1))
    return found


def _free_name(folder: Path, step: int) -> str:
    base = name = f"step-{step:09d}"
    suffix = 0
    while (folder / name).exists():
        suffix += 1
        name = f"{base}-{suffix}"
    return name


def _prune(folder: Path, current: str, keep: int, kind: str) -> None:
    """Delete other checkpoints of ``current``'s step, then all but the newest ``keep`` (``current`` included)."""
    steps = _steps(folder)
    step = steps.pop(current)
    superseded = [name for name, s in steps.items() if s == step]
    ranked = sorted((s, name) for name, s in steps.items() if s != step)
    surplus = [name for _, name in ranked[: max(len(ranked) - (keep - 1), 0)]] if keep > 0 else []
    for name in superseded + surplus:
        trash = folder / f".tmp-trash-{name}-{os.getpid()}"
        os.replace(folder / name, trash)
        fault_point(f"{kind}:removing")
        shutil.rmtree(trash, ignore_errors=True)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _sync_folder(path: Path) -> None:
    """Make a rename or new entry in ``path`` durable (a no-op where folders cannot be opened)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    if not isinstance(rest["param_groups"], list):
        raise ValueError(f"'param_groups' must be a list, got {_kind(rest['param_groups'])}")
    return {"state": dict(sorted(state.items())), "param_groups": rest["param_groups"]}
