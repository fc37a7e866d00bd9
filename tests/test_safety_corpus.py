"""Every bad input of the safety corpus (``metamap.bench.safety.CASES``) is refused in one line.

Each case runs in-process through ``metamap.cli.main`` (fast); the cases with
a crafted pickle run as a subprocess, so that a payload that did run could not
touch the test process. Every case must exit with code 2, print exactly one
stderr line naming what it expects, leave its prepared files untouched, and
never run a payload.
"""

from __future__ import annotations

import pytest

from metamap.bench import safety
from metamap.cli import main


def _outcome(case: safety.Case, folder, capsys) -> dict:
    argv = case.prepare(folder)
    before = safety.snapshot(folder)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse refuses a flag value
        code = exc.code
    return safety.judge(case, folder, before, code, capsys.readouterr().err)


@pytest.mark.parametrize("case", [c for c in safety.CASES if not c.payload], ids=lambda c: c.name)
def test_bad_input_ends_in_one_line(case, tmp_path, capsys, monkeypatch):
    if case.needs is not None and not case.needs.exists():
        pytest.skip(f"needs {case.needs}")
    monkeypatch.chdir(tmp_path)
    result = _outcome(case, tmp_path, capsys)
    assert result["problems"] == [], result["error"]
    assert result["error"].startswith("metamap")
    assert not result["traceback"] and not result["payload_ran"]
    assert result["files_changed"] == []


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in safety.CASES if c.payload], ids=lambda c: c.name)
def test_crafted_pickles_never_run(case):
    result = safety.run_case(case)
    assert not result["payload_ran"]
    assert not result["traceback"], result["error"]
    assert result["problems"] == [], result["error"]
    assert result["files_changed"] == []


def test_the_corpus_covers_every_command():
    assert len(safety.CASES) >= 40
    assert len({case.name for case in safety.CASES}) == len(safety.CASES)
    commands = {case.name.split()[0] for case in safety.CASES}
    assert {"train", "evaluate", "demo", "bench", "omniglot", "traffic", "astro", "physics", "energy"} <= commands
    assert sum(case.payload for case in safety.CASES) >= 3


def test_judge_tells_each_failure_apart(tmp_path):
    case = safety.Case("example", lambda f: [], expect="--hidden")
    kept = tmp_path / "kept.txt"
    kept.write_text("run")
    before = safety.snapshot(tmp_path)
    assert safety.judge(case, tmp_path, before, 2, "metamap train: error: --hidden 0\n")["problems"] == []
    traceback = safety.judge(case, tmp_path, before, 1, f"{safety.TRACEBACK}:\n  File ...\nValueError: x\n")
    assert traceback["traceback"] and not traceback["silent_wrong"]
    assert safety.judge(case, tmp_path, before, 0, "")["silent_wrong"]
    assert safety.judge(case, tmp_path, before, None, "")["problems"][0] == "still running at the timeout"
    assert safety.judge(case, tmp_path, before, 2, "metamap: error: --lr\n")["silent_wrong"]  # names the wrong flag
    kept.write_text("lost")
    (tmp_path / safety.MARKER).touch()
    hurt = safety.judge(case, tmp_path, before, 2, "metamap: error: --hidden\n")
    assert hurt["files_changed"] == ["kept.txt"] and hurt["payload_ran"]


@pytest.mark.slow
def test_bench_run_counts_a_command_that_is_not_refused(tmp_path, monkeypatch):
    cases = (
        safety.Case("refused", lambda f: ["train", "--hidden", "0", "--out", str(f / "r")], "--hidden", quick=True),
        safety.Case("not refused", lambda f: ["--version"], quick=True),
    )
    monkeypatch.setattr(safety, "CASES", cases)
    result = safety.run(quick=True, json_path=tmp_path / "safety.json")
    assert result["headline"] == {
        "payloads_run": 0,
        "tracebacks": 0,
        "silent_wrong": 1,
        "runs_lost": 0,
        "kill_points_exact": None,
        "kill_points_total": None,
        "cases": 2,
    }
    assert result["goals"]["met"] is False and (tmp_path / "safety.json").is_file()
