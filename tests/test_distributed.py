"""Two ``torchrun`` processes (gloo) give the same result as one process with the same meta-batch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from metamap.training import load_checkpoint

ARGS = [
    "train",
    "--family",
    "sinusoid",
    "--learner",
    "maml",
    "--hidden",
    "16",
    "16",
    "--inner-steps",
    "2",
    "--steps",
    "6",
    "--meta-batch",
    "8",
    "--lr",
    "0.01",
    "--seed",
    "5",
    "--episodes",
    "0",
    "--no-progress",
]


def _run(command: list[str], tmp_path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
    _run([sys.executable, "-m", "metamap", *ARGS, "--out", str(tmp_path / "one")], tmp_path)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    _run([*torchrun, "-m", "metamap", *ARGS, "--out", str(tmp_path / "two")], tmp_path)
    one = load_checkpoint(tmp_path / "one")
    two = load_checkpoint(tmp_path / "two")
    assert one.step == two.step == 6
    # Summation order differs (two shards of 4 tasks, then an all-reduce), so float32 tolerance.
    for key, value in one.learner_state.items():
        torch.testing.assert_close(two.learner_state[key], value, rtol=1e-5, atol=1e-5, msg=key)
    # the runs trained: weights differ from the seed's initial weights by far more than the tolerance
    torch.manual_seed(5)
    start = torch.nn.Linear(1, 16)
    assert (one.learner_state["model.0.weight"] - start.weight).abs().max() > 1e-3


@pytest.mark.slow
def test_uneven_meta_batch_is_refused(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    args = [a if a != "8" else "7" for a in ARGS]
    done = subprocess.run(
        [*torchrun, "-m", "metamap", *args, "--out", str(tmp_path / "x")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "divisible" in done.stderr
