"""Run folders: one writer at a time, no silent mixing of runs, crash-safe and verified checkpoints."""

from __future__ import annotations

import json
import os
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from metamap.bench.faults import kill_point_trials
from metamap.cli import main
from metamap.errors import CheckpointError, ConfigError, DataError
from metamap.recipes import build_learner
from metamap.tasks import Sinusoid
from metamap.training import TrainConfig, load_checkpoint, meta_train, save_checkpoint
from metamap.training.checkpoint import STATE, TENSORS, latest_checkpoint
from metamap.training.metrics_log import read_records
from metamap.training.run_folder import LOCK, claim_run_folder

RUN = {
    "family": {"name": "sinusoid", "k_shot": 5, "n_query": 10},
    "model": {"hidden": [8]},
    "learner": {"name": "maml", "inner_steps": 1, "inner_lr": 0.01},
    "seed": 0,
}
TINY = ["train", "--hidden", "8", "--meta-batch", "2", "--checkpoint-every", "2", "--episodes", "0", "--no-progress"]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("metamap: error:") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@contextmanager
def _held_by_another_process(run: Path):
    """A forked child holding ``run``'s claim for the ``with`` block; yields the child's PID."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child only takes the lock and waits: no torch work after the fork
        try:
            with claim_run_folder(run, resume=True, command="metamap train --out elsewhere"):
                os.write(ready_w, b"1")
                os.read(go_r, 1)
        finally:
            os._exit(0)
    assert os.read(ready_r, 1) == b"1"
    try:
        yield pid
    finally:
        try:
            os.write(go_w, b"1")
            os.waitpid(pid, 0)
        except (BrokenPipeError, ChildProcessError):  # the test killed and reaped the child
            pass
        for fd in (ready_r, ready_w, go_r, go_w):
            os.close(fd)


@pytest.mark.slow
def test_a_kill_at_every_write_point_resumes_to_the_same_bytes(tmp_path):
    result = kill_point_trials(tmp_path)
    failed = {name: trial for name, trial in result["points"].items() if not trial["exact"]}
    assert not failed
    assert result["kill_points_exact"] == result["kill_points_total"] >= 14


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path, capsys):
    run = tmp_path / "run"
    with _held_by_another_process(run) as pid:
        with pytest.raises(CheckpointError, match=f"in use by another metamap process \\(PID {pid} "):
            with claim_run_folder(run, resume=True):
                pass
        assert main([*TINY, "--steps", "2", "--out", str(run)]) == 2
        err = _one_error_line(capsys)
        assert f"PID {pid}" in err and "metamap train --out elsewhere" in err
        assert not (run / "checkpoints").exists()
    with claim_run_folder(run, resume=False) as claimed:  # released when the holder left
        assert claimed.path == run and (run / LOCK).is_file()
    assert not run.exists()  # created by the claims, still empty: removed


def test_diffusion_training_into_a_held_folder_is_refused(tmp_path):
    from metamap.diffusion.schedules import NoiseSchedule
    from metamap.training.diffusion import train_diffusion

    with _held_by_another_process(tmp_path / "run") as pid:
        with pytest.raises(CheckpointError, match=f"PID {pid}"):
            train_diffusion(
                torch.nn.Identity(),
                NoiseSchedule.cosine(10),
                [{"x0": torch.zeros(1, 1, 4, 4)}],
                steps=1,
                run_dir=tmp_path / "run",
                progress=False,
            )


def test_a_lock_held_by_a_killed_process_is_free_again(tmp_path):
    run = tmp_path / "run"
    with _held_by_another_process(run) as pid:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        with claim_run_folder(run, resume=True):
            assert json.loads((run / LOCK).read_text())["pid"] == os.getpid()


def test_claims_nest_within_one_process(tmp_path):
    with claim_run_folder(tmp_path / "run", resume=False, overwrite=True) as outer:
        (outer.path / "metrics.jsonl").write_text("")
        with claim_run_folder(tmp_path / "run", resume=False) as inner:  # the folder is not empty: no re-check
            assert inner is outer


def test_training_again_without_resume_is_refused_and_touches_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*TINY, "--steps", "4", "--out", str(run)]) == 0
    capsys.readouterr()
    before = _snapshot(run)
    assert main([*TINY, "--steps", "2", "--out", str(run)]) == 2
    err = _one_error_line(capsys)
    assert "already holds files" in err and "--resume" in err and "--overwrite" in err
    assert _snapshot(run) == before
    assert main([*TINY, "--steps", "2", "--out", str(run), "--resume", "--overwrite"]) == 2
    assert "choose one" in _one_error_line(capsys)
    assert _snapshot(run) == before


def test_resume_with_fewer_steps_keeps_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*TINY, "--steps", "6", "--out", str(run)]) == 0
    records = read_records(run)
    assert main([*TINY, "--steps", "4", "--out", str(run), "--resume"]) == 0
    assert load_checkpoint(run).step == 6
    assert read_records(run) == records
    assert len(list((run / "checkpoints").glob("step-*"))) == 2


def test_overwrite_replaces_only_metamaps_files(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*TINY, "--steps", "6", "--out", str(run)]) == 0
    (run / "notes.txt").write_text("mine")
    assert main([*TINY, "--steps", "2", "--out", str(run), "--overwrite"]) == 0
    assert load_checkpoint(run).step == 2
    assert [r["step"] for r in read_records(run)] == [2]
    assert [p.name for p in (run / "checkpoints").glob("step-*")] == [latest_checkpoint(run).name]
    assert (run / "notes.txt").read_text() == "mine"
    assert not (run / LOCK).exists()


def test_a_command_failing_on_bad_input_leaves_no_folder(tmp_path, capsys):
    assert main([*TINY, "--learner", "mamll", "--out", str(tmp_path / "new")]) == 2
    assert "unknown learner" in _one_error_line(capsys)
    assert not (tmp_path / "new").exists()


def test_the_run_folder_cannot_be_an_input(tmp_path):
    with pytest.raises(ConfigError, match="is the input folder"):
        with claim_run_folder(tmp_path, resume=False, inputs=(tmp_path,)):
            pass


def test_leftovers_of_interrupted_writes_are_removed_on_claim(tmp_path):
    learner = build_learner(RUN)
    save_checkpoint(tmp_path, 2, {"run": RUN}, learner)
    stale = [
        tmp_path / "checkpoints" / ".tmp-step-000000004-4242",
        tmp_path / ".tmp-trash-metrics.csv-4242",
        tmp_path / "checkpoints" / ".tmp-trash-step-000000000-4242",
    ]
    for folder in stale:
        folder.mkdir()
        (folder / TENSORS).write_bytes(b"half")
    torn_pointer = tmp_path / "checkpoints" / ".latest.abc123.tmp"
    torn_pointer.write_text("step-0000")
    kept = tmp_path / "notes.tmp"
    kept.write_text("a user's file")
    with claim_run_folder(tmp_path, resume=True):
        assert not any(p.exists() for p in [*stale, torn_pointer])
        assert kept.exists() and latest_checkpoint(tmp_path).name == "step-000000002"


def test_pruning_keeps_the_checkpoint_just_written_and_ranks_by_step(tmp_path):
    learner = build_learner(RUN)
    for step in (6, 5, 4):  # an older step written last must survive its own save
        save_checkpoint(tmp_path, step, {"run": RUN}, learner, keep=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*")) == ["step-000000004", "step-000000006"]
    assert load_checkpoint(tmp_path).step == 4
    big = tmp_path / "big"
    for step in (999_999_999, 1_000_000_000, 1_000_000_001):  # 9 then 10 digits: names no longer sort by step
        save_checkpoint(big, step, {"run": RUN}, learner, keep=2)
    assert sorted(p.name for p in (big / "checkpoints").glob("step-*")) == ["step-1000000000", "step-1000000001"]


def test_saving_a_step_again_replaces_it_under_a_new_name(tmp_path):
    learner = build_learner(RUN)
    first = save_checkpoint(tmp_path, 3, {"run": RUN}, learner, extra={"attempt": 1})
    second = save_checkpoint(tmp_path, 3, {"run": RUN}, learner, extra={"attempt": 2})
    assert first.name == "step-000000003" and second.name == "step-000000003-1"
    assert not first.exists() and latest_checkpoint(tmp_path) == second
    assert load_checkpoint(tmp_path).extra == {"attempt": 2}
    third = save_checkpoint(tmp_path, 3, {"run": RUN}, learner, extra={"attempt": 3})
    assert third.name == "step-000000003" and not second.exists()


def test_a_flipped_byte_in_the_tensors_file_is_caught(tmp_path):
    folder = save_checkpoint(tmp_path, 1, {"run": RUN}, build_learner(RUN))
    data = bytearray((folder / TENSORS).read_bytes())
    data[-3] ^= 0x10  # inside the last tensor's values: the file still parses
    (folder / TENSORS).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"{TENSORS} does not match the SHA-256 recorded in {STATE}"):
        load_checkpoint(tmp_path)


def test_non_finite_weights_are_refused(tmp_path):
    learner = build_learner(RUN)
    with torch.no_grad():
        next(learner.parameters())[0] = float("nan")
    save_checkpoint(tmp_path, 1, {"run": RUN}, learner)
    with pytest.raises(CheckpointError, match="hold NaN or inf"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: [], "expected a JSON object, got a list"),
        (lambda s: "step 3", "expected a JSON object, got a string"),
        (lambda s: {**s, "step": "3"}, "'step' to be a whole number >= 0, got a string"),
        (lambda s: {**s, "step": True}, "'step' to be a whole number >= 0, got a boolean"),
        (lambda s: {**s, "step": -1}, "'step' to be a whole number >= 0"),
        (lambda s: {k: v for k, v in s.items() if k != "config"}, "'config' to be an object, got nothing"),
        (lambda s: {**s, "config": [1]}, "'config' to be an object, got a list"),
        (lambda s: {**s, "optimizer": "adam"}, "'optimizer' to be an object or null"),
        (lambda s: {**s, "optimizer": {"scalars": {}}}, "optimizer entry is malformed"),
        (lambda s: {**s, "format_version": 99}, "format_version 1 or 2, got 99"),
        (lambda s: {k: v for k, v in s.items() if k != "tensors_sha256"}, "'tensors_sha256' to be 64 hex digits"),
    ],
)
def test_a_hand_edited_state_file_gives_one_line(tmp_path, capsys, edit, message):
    folder = save_checkpoint(
        tmp_path, 1, {"run": RUN}, build_learner(RUN), torch.optim.Adam(build_learner(RUN).parameters())
    )
    state_file = folder / STATE
    state_file.write_text(json.dumps(edit(json.loads(state_file.read_text()))))
    with pytest.raises(CheckpointError, match=message.replace("(", "\\(")) as caught:
        load_checkpoint(tmp_path)
    assert "\n" not in str(caught.value)
    assert main(["evaluate", str(tmp_path), "--episodes", "2"]) == 2
    assert message in _one_error_line(capsys)


def test_a_pointer_outside_the_checkpoints_is_refused(tmp_path):
    save_checkpoint(tmp_path, 1, {"run": RUN}, build_learner(RUN))
    (tmp_path / "checkpoints" / "latest").write_text("../../elsewhere")
    with pytest.raises(CheckpointError, match="expected the name of a checkpoint folder"):
        load_checkpoint(tmp_path)


def _train(run: Path, steps: int, resume: bool = False):
    config = TrainConfig(steps=steps, meta_batch=2, lr=3e-3, seed=1, checkpoint_every=2, log_every=1, progress=False)
    meta_train(build_learner(RUN), Sinusoid(k_shot=5, n_query=10), config, run_dir=run, run_config=RUN, resume=resume)


def test_a_torn_last_metrics_line_is_dropped_on_resume(tmp_path):
    _train(tmp_path / "straight", 6)
    run = tmp_path / "run"
    _train(run, 4)
    with (run / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 5, "train_lo')  # a write cut short by a kill
    with pytest.warns(RuntimeWarning, match="cut short"):
        _train(run, 6, resume=True)
    assert [r["step"] for r in read_records(run)] == [1, 2, 3, 4, 5, 6]
    assert read_records(run) == read_records(tmp_path / "straight")


def test_a_corrupt_metrics_line_before_the_end_is_an_error(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(DataError, match="metrics.jsonl line 2: expected a JSON record"):
        read_records(tmp_path)
