"""Shared fixtures: the real data folder (skipped with a reason where absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from metamap.errors import DataError
from metamap.paths import shared_data_dir


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the repository (or ``$METAMAP_SHARED_DATA``); skips where absent."""
    try:
        return shared_data_dir()
    except DataError as exc:
        pytest.skip(str(exc))


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.set_num_threads(1)
    yield
