"""Training loop: checkpoint round trips, exact resume, interruption, logs, evaluation."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from metamap.errors import CheckpointError, ConfigError, TrainingInterrupted
from metamap.learners import AdaptOptions
from metamap.recipes import build_learner
from metamap.tasks import Sinusoid
from metamap.training import TrainConfig, evaluate_learner, load_checkpoint, meta_train, save_checkpoint
from metamap.training.checkpoint import latest_checkpoint, load_learner_state
from metamap.training.loop import make_optimizer
from metamap.training.metrics_log import read_records

RUN = {
    "family": {"name": "sinusoid", "k_shot": 5, "n_query": 10},
    "model": {"hidden": [16, 16]},
    "learner": {"name": "maml", "inner_steps": 1, "inner_lr": 0.01, "learn_inner_lr": True},
    "seed": 3,
}
FAMILY = Sinusoid(k_shot=5, n_query=10)


def _config(**overrides) -> TrainConfig:
    base = dict(steps=12, meta_batch=4, lr=3e-3, seed=7, checkpoint_every=4, log_every=2, progress=False)
    return TrainConfig(**{**base, **overrides})


def _params(learner) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in learner.state_dict().items()}


def test_checkpoint_round_trip_restores_weights_optimizer_and_generators(tmp_path):
    learner = build_learner(RUN)
    optimizer = make_optimizer(learner, _config())
    learner.meta_backward(FAMILY.sample(4, torch.Generator().manual_seed(0)))
    optimizer.step()
    gen = torch.Generator().manual_seed(11)
    save_checkpoint(tmp_path, 5, {"run": RUN}, learner, optimizer, {"sampler": gen.get_state()})

    loaded = load_checkpoint(tmp_path)
    assert loaded.step == 5 and loaded.config == {"run": RUN}
    fresh = build_learner({**RUN, "seed": 99})
    load_learner_state(fresh, loaded)
    for key, value in learner.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    fresh_opt = make_optimizer(fresh, _config())
    fresh_opt.load_state_dict(loaded.optimizer_state)
    saved_state, restored_state = optimizer.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert saved_state.keys() == restored_state.keys()
    for param_id, entries in saved_state.items():
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(entries[name], restored_state[param_id][name]), (param_id, name)
    restored = torch.Generator()
    restored.set_state(loaded.generators["sampler"])
    assert torch.equal(torch.rand(5, generator=restored), torch.rand(5, generator=gen))


def test_checkpoint_from_another_model_is_refused(tmp_path):
    save_checkpoint(tmp_path, 1, {"run": RUN}, build_learner(RUN))
    other = build_learner({**RUN, "model": {"hidden": [8]}})
    with pytest.raises(CheckpointError, match="another model"):
        load_learner_state(other, load_checkpoint(tmp_path))


def test_corrupt_or_missing_checkpoint_gives_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint|not a metamap checkpoint"):
        load_checkpoint(tmp_path)
    folder = save_checkpoint(tmp_path, 1, {"run": RUN}, build_learner(RUN))
    (folder / "tensors.safetensors").write_bytes(b"garbage, not safetensors")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path)


def test_old_checkpoints_pruned_and_latest_points_at_newest(tmp_path):
    learner = build_learner(RUN)
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {"run": RUN}, learner, keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*"))
    assert names == ["step-000000002", "step-000000003"]
    assert latest_checkpoint(tmp_path).name == "step-000000003"
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_same_seed_same_numbers(tmp_path):
    runs = []
    for name in ("a", "b"):
        learner = build_learner(RUN)
        meta_train(learner, FAMILY, _config(), run_dir=tmp_path / name, run_config=RUN)
        runs.append(_params(learner))
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[1][key]), key
    other = build_learner(RUN)
    meta_train(other, FAMILY, _config(seed=8), run_dir=tmp_path / "c", run_config=RUN)
    assert not torch.equal(_params(other)["model.0.weight"], runs[0]["model.0.weight"])


def test_resume_equals_uninterrupted_run(tmp_path):
    straight = build_learner(RUN)
    meta_train(straight, FAMILY, _config(), run_dir=tmp_path / "straight", run_config=RUN)

    first = build_learner(RUN)
    meta_train(first, FAMILY, _config(steps=8), run_dir=tmp_path / "resumed", run_config=RUN)
    second = build_learner({**RUN, "seed": 1234})  # different init: everything must come from the checkpoint
    result = meta_train(second, FAMILY, _config(), run_dir=tmp_path / "resumed", run_config=RUN, resume=True)
    assert result.steps_done == 4
    for key, value in _params(straight).items():
        assert torch.equal(_params(second)[key], value), key
    logs = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    straight_logs = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert logs == straight_logs


def test_interrupt_saves_checkpoint_and_resume_completes_identically(tmp_path):
    straight = build_learner(RUN)
    meta_train(straight, FAMILY, _config(checkpoint_every=0), run_dir=tmp_path / "straight", run_config=RUN)

    def interrupt_at_step_5(step, loss):
        if step == 5:
            os.kill(os.getpid(), signal.SIGINT)

    learner = build_learner(RUN)
    with pytest.raises(TrainingInterrupted, match="interrupted at step 5; checkpoint saved"):
        meta_train(
            learner,
            FAMILY,
            _config(checkpoint_every=0),
            run_dir=tmp_path / "run",
            run_config=RUN,
            on_step=interrupt_at_step_5,
        )
    assert load_checkpoint(tmp_path / "run").step == 5
    resumed = build_learner(RUN)
    meta_train(resumed, FAMILY, _config(checkpoint_every=0), run_dir=tmp_path / "run", run_config=RUN, resume=True)
    for key, value in _params(straight).items():
        assert torch.equal(_params(resumed)[key], value), key
    # stopped between two records (every 2 steps): the record of step 6 still averages steps 5 and 6
    assert read_records(tmp_path / "run") == read_records(tmp_path / "straight")


def test_resume_with_another_configuration_is_refused(tmp_path):
    meta_train(build_learner(RUN), FAMILY, _config(steps=2), run_dir=tmp_path, run_config=RUN)
    other = {**RUN, "learner": {**RUN["learner"], "inner_lr": 0.5}}
    with pytest.raises(CheckpointError, match="different configuration"):
        meta_train(build_learner(other), FAMILY, _config(), run_dir=tmp_path, run_config=other, resume=True)


def test_metrics_written_as_jsonl_and_csv(tmp_path):
    meta_train(build_learner(RUN), FAMILY, _config(val_every=6, val_tasks=10), run_dir=tmp_path, run_config=RUN)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6, 8, 10, 12]
    assert all(r["train_loss"] > 0 for r in records)
    assert "val_mse" in records[2] and "val_mse" not in records[0]
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == ["step", "train_loss", "val_mse"]


def test_meta_training_lowers_the_test_error():
    learner = build_learner({**RUN, "model": {"hidden": [40, 40]}})
    test = FAMILY.split("test")
    before = evaluate_learner(learner, test, n_tasks=200, seed=5)
    meta_train(learner, FAMILY, _config(steps=400, meta_batch=10, lr=1e-2, checkpoint_every=0))
    after = evaluate_learner(learner, test, n_tasks=200, seed=5)
    assert after.mean < 0.6 * before.mean, (before, after)
    assert after.n_tasks == 200 and 0 < after.ci95 < after.mean


def test_bad_training_configuration():
    with pytest.raises(ConfigError, match="meta_batch"):
        TrainConfig(meta_batch=0)
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ConfigError, match="max_seconds must be > 0"):
        TrainConfig(max_seconds=0)


def test_time_budget_counts_across_resume(tmp_path):
    first = meta_train(
        build_learner(RUN), FAMILY, _config(steps=5, checkpoint_every=0), run_dir=tmp_path, run_config=RUN
    )
    assert load_checkpoint(tmp_path).extra["train_seconds"] == pytest.approx(first.total_seconds)
    # the budget is already spent by the first call: a resumed run takes no further step
    again = meta_train(
        build_learner(RUN),
        FAMILY,
        _config(steps=12, max_seconds=first.total_seconds / 2),
        run_dir=tmp_path,
        run_config=RUN,
        resume=True,
    )
    assert again.steps_done == 0 and again.final_step == 5


def test_diverging_adaptation_is_reported_not_averaged_away():
    learner = build_learner({**RUN, "learner": {"name": "maml", "inner_steps": 1, "inner_lr": 1e6}})
    score = evaluate_learner(learner, FAMILY.split("test"), n_tasks=20, seed=0, options=AdaptOptions(steps=20))
    assert score.diverged > 0 and score.mean == float("inf")
    assert "diverged on" in str(score)


def test_tensorboard_events_written_when_installed(tmp_path):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator", reason="tensorboard is not installed"
    )
    meta_train(build_learner(RUN), FAMILY, _config(val_every=6, val_tasks=10), run_dir=tmp_path, run_config=RUN)
    events = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert events.Tags()["scalars"] == ["train_loss", "val_mse"]
    assert [e.step for e in events.Scalars("train_loss")] == [2, 4, 6, 8, 10, 12]
    jsonl = [json.loads(line)["train_loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [e.value for e in events.Scalars("train_loss")] == pytest.approx(jsonl)
