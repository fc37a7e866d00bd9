"""Where the project's real data live: ``../shared/data`` beside the repository."""

from __future__ import annotations

import os
from pathlib import Path

from metamap.errors import DataError


def shared_data_dir() -> Path:
    """``$METAMAP_SHARED_DATA``, else ``../shared/data`` from the working folder or from this checkout."""
    candidates = []
    if os.environ.get("METAMAP_SHARED_DATA"):
        candidates.append(Path(os.environ["METAMAP_SHARED_DATA"]))
    candidates += [Path.cwd().parent / "shared" / "data", Path(__file__).resolve().parents[3] / "shared" / "data"]
    for folder in candidates:
        if folder.is_dir():
            return folder
    raise DataError(
        "the real data folder was not found; expected one of "
        + ", ".join(str(c) for c in candidates)
        + " (set METAMAP_SHARED_DATA to the folder holding omniglot/, traffic/, ...)"
    )
