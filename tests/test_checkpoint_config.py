"""Adding what is known only after training (settings chosen on validation) to a run's latest checkpoint."""

from __future__ import annotations

import pytest
import torch

from metamap.errors import CheckpointError
from metamap.training.checkpoint import add_to_latest_config, load_checkpoint, save_checkpoint


def test_added_config_is_read_back_and_the_checkpoint_still_verifies(tmp_path):
    model = torch.nn.Linear(3, 2)
    save_checkpoint(tmp_path, 1, {"run": {"kind": "test"}}, model)
    newest = save_checkpoint(tmp_path, 2, {"run": {"kind": "test"}}, model)
    folder = add_to_latest_config(tmp_path, "adaptation", {"options": {"steps": 5}, "validation_mae": 1.5})
    assert folder == newest
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint.step == 2
    assert checkpoint.config == {
        "run": {"kind": "test"},
        "adaptation": {"options": {"steps": 5}, "validation_mae": 1.5},
    }
    assert torch.equal(checkpoint.learner_state["weight"], model.weight.detach())


def test_a_run_without_checkpoint_refuses(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint to add 'adaptation' to"):
        add_to_latest_config(tmp_path, "adaptation", {})
