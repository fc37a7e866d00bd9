"""Results a benchmark keeps between runs, reused only when they were made with the same settings.

A stopped or repeated benchmark should not redo minutes of training, but a
result made with other settings (a changed budget, ``--quick`` against the
full run, an older file without settings) must never pass for the current
one. The file is one JSON object: the payload plus its ``"settings"``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from metamap.report import write_json


def _as_json(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` as they come back from a JSON file (tuples become lists)."""
    return json.loads(json.dumps(settings))


def load_cached(path: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The result saved at ``path`` by :func:`save_cached` with equal ``settings``, else None.

    None is returned without a message when there is no file, and with a
    printed reason when the file is unreadable or was made with other
    settings (the keys that differ are named).
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        print(f"[cache] not reusing {path}: unreadable ({type(exc).__name__}: {exc})")
        return None
    if not isinstance(saved, dict) or not isinstance(saved.get("settings"), dict):
        print(f"[cache] not reusing {path}: it records no settings")
        return None
    wanted = _as_json(settings)
    if saved["settings"] != wanted:
        differ = sorted(
            k for k in wanted.keys() | saved["settings"].keys() if saved["settings"].get(k) != wanted.get(k)
        )
        print(f"[cache] not reusing {path}: made with other settings ({', '.join(differ)} differ)")
        return None
    print(f"[cache] reusing {path}")
    return saved


def save_cached(path: Path, settings: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """Write ``{**payload, "settings": settings}`` to ``path`` atomically; returns what :func:`load_cached` will."""
    write_json(Path(path), {**payload, "settings": _as_json(settings)})
    return json.loads(Path(path).read_text())


def runs_folder(json_path: Path, quick: bool) -> Path:
    """Where a benchmark keeps its runs: ``<json stem>_runs/`` beside the JSON (``_quick_runs/`` with ``--quick``,
    so a quick run never resumes from, or overwrites, the full run's checkpoints)."""
    json_path = Path(json_path)
    return json_path.with_name(json_path.stem + ("_quick_runs" if quick else "_runs"))
