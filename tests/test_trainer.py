"""The one training loop: budget, records, interrupt, checkpoints and exact resume."""

import json
import os
import signal
import time

import pytest
import torch

from metamap.errors import CheckpointError, ConfigError, TrainingInterrupted
from metamap.seeding import seeded
from metamap.training.checkpoint import load_checkpoint
from metamap.training.trainer import Trainer

TRUE_WEIGHTS = torch.tensor([[2.0, -1.0]])


class Toy:
    """A linear regression trained by Adam on minibatches drawn from its own generator."""

    def __init__(self, steps, run_dir=None, interrupt_at=(), **options):
        with seeded(0):  # the same initial weights in every run of a test
            self.model = torch.nn.Linear(2, 1)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=0.05)
        self.generator = torch.Generator().manual_seed(1)
        self.interrupt_at = list(interrupt_at)  # a step listed twice gets two signals
        self.trainer = Trainer(
            self.model,
            self.optimizer,
            steps=steps,
            generators={"data": self.generator},
            run_dir=run_dir,
            config={"toy": 1},
            progress=False,
            **options,
        )

    def step(self, index):
        x = torch.randn(8, 2, generator=self.generator)
        loss = ((self.model(x) - x @ TRUE_WEIGHTS.T) ** 2).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        for _ in range(self.interrupt_at.count(index)):
            os.kill(os.getpid(), signal.SIGINT)
        return float(loss)

    @staticmethod
    def record(steps_done, loss):
        return {"train_loss": loss} if steps_done % 2 == 0 else None

    def run(self):
        return self.trainer.run(self.step, self.record)


def test_runs_the_steps_and_logs_what_the_record_returns(tmp_path):
    toy = Toy(6, run_dir=tmp_path)
    result = toy.run()
    assert (result.steps_done, result.final_step) == (6, 6)
    assert [r["step"] for r in result.history] == [2, 4, 6]
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert logged == result.history
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint.step == 6 and set(checkpoint.generators) == {"data"}
    assert checkpoint.extra["train_seconds"] == pytest.approx(result.total_seconds)


def test_a_time_budget_stops_after_the_first_step_past_it():
    trainer = Trainer(torch.nn.Linear(1, 1), None, steps=1000, max_seconds=0.05, progress=False)
    result = trainer.run(lambda index: time.sleep(0.02) or 0.0)
    assert 2 <= result.steps_done <= 4


def test_an_interrupt_finishes_the_step_saves_and_resumes_exactly(tmp_path):
    straight = Toy(8)
    straight.run()
    stopped = Toy(8, run_dir=tmp_path, interrupt_at=[2])
    with pytest.raises(TrainingInterrupted, match="at step 3; checkpoint saved"):
        stopped.run()
    assert load_checkpoint(tmp_path).step == 3
    resumed = Toy(8, run_dir=tmp_path)
    assert resumed.trainer.resume(tmp_path) == {}
    result = resumed.run()
    assert result.steps_done == 5 and [r["step"] for r in result.history] == [2, 4, 6, 8]
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_second_interrupt_stops_at_once(tmp_path):
    toy = Toy(8, run_dir=tmp_path, interrupt_at=[1, 1], checkpoint_every=1)
    with pytest.raises(KeyboardInterrupt):
        toy.run()
    assert load_checkpoint(tmp_path).step == 1  # the periodic checkpoint before the abort, none after


def test_without_a_run_folder_nothing_is_written_and_an_interrupt_still_stops(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TrainingInterrupted, match="at step 1$"):
        Toy(5, interrupt_at=[0]).run()
    assert not any(tmp_path.iterdir())


def test_resume_checks_the_config_and_the_generators(tmp_path):
    Toy(2, run_dir=tmp_path).run()

    def refuse(config, folder):
        raise CheckpointError(f"{folder}: config {config}")

    with pytest.raises(CheckpointError, match="config {'toy': 1}"):
        Toy(4).trainer.resume(tmp_path, refuse)
    other = Trainer(torch.nn.Linear(2, 1), None, steps=4, generators={"noise": torch.Generator()}, progress=False)
    with pytest.raises(CheckpointError, match=r"random-generator states \['noise'\]"):
        other.resume(tmp_path)
    assert Toy(4).trainer.resume(tmp_path / "empty") is None


def test_bad_budgets_are_config_errors():
    with pytest.raises(ConfigError, match="max_seconds"):
        Trainer(torch.nn.Linear(1, 1), None, steps=1, max_seconds=0)
    with pytest.raises(ConfigError, match="steps >= 0"):
        Trainer(torch.nn.Linear(1, 1), None, steps=-1)
