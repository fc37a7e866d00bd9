"""The progress convention: a tqdm bar on a terminal, a handful of whole lines in a log, nothing when disabled."""

from __future__ import annotations

import io

import pytest
from tqdm import tqdm

import metamap.progress as progress_module
from metamap.progress import PlainProgress, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(progress_module.time, "monotonic", fake)
    return fake


def test_a_log_gets_one_line_per_quarter_and_no_redraws():
    log = io.StringIO()
    assert list(progress_bar(range(1000), desc="meta-train", stream=log)) == list(range(1000))
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert [line.split(",")[0] for line in lines] == [
        "meta-train: 250/1000 (25%)",
        "meta-train: 500/1000 (50%)",
        "meta-train: 750/1000 (75%)",
        "meta-train: 1000/1000 (100%)",
    ]


def test_manual_updates_resume_from_initial_and_show_the_postfix():
    log = io.StringIO()
    with progress_bar(total=100, initial=60, desc="diffusion training", stream=log) as bar:
        for _ in range(40):
            bar.update(1)
            bar.set_postfix(loss="0.0123")
    lines = log.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "diffusion training: 75/100 (75%)",
        "diffusion training: 100/100 (100%)",
    ]
    assert lines[-1].endswith("loss=0.0123")


def test_an_open_ended_loop_prints_every_30_seconds_and_at_close(clock):
    log = io.StringIO()
    bar = progress_bar(desc="meta-train", stream=log)
    for _ in range(100):  # 100 steps of 1 s: lines at 30, 60, 90 s, then the last count at close
        clock.now += 1.0
        bar.update(1)
    bar.close()
    bar.close()
    assert [line.split(",")[0] for line in log.getvalue().splitlines()] == [
        "meta-train: 30",
        "meta-train: 60",
        "meta-train: 90",
        "meta-train: 100",
    ]


def test_disabled_prints_nothing_but_still_iterates():
    log, terminal = io.StringIO(), Terminal()
    assert list(progress_bar(range(7), desc="sampling", enabled=False, stream=log)) == list(range(7))
    assert list(progress_bar(range(7), desc="sampling", enabled=False, stream=terminal)) == list(range(7))
    assert log.getvalue() == "" and terminal.getvalue() == ""


def test_a_terminal_gets_a_tqdm_bar_and_a_log_does_not():
    terminal = Terminal()
    bar = progress_bar(total=10, desc="HiGHS case30", stream=terminal)
    assert isinstance(bar, tqdm)
    bar.update(10)
    bar.close()
    assert "HiGHS case30" in terminal.getvalue()
    assert isinstance(progress_bar(total=10, desc="HiGHS case30", stream=io.StringIO()), PlainProgress)
