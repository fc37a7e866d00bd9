"""The ``metamap`` command end to end on tiny settings, and its one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from metamap.cli import main

TINY = ["--hidden", "8", "--steps", "4", "--meta-batch", "2", "--episodes", "20", "--no-progress"]


def test_train_then_evaluate(tmp_path, capsys):
    assert main(["train", "--learner", "fomaml", *TINY, "--out", str(tmp_path / "run")]) == 0
    evaluation = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert evaluation["test"]["metric"] == "mse" and evaluation["test"]["n_tasks"] == 20
    assert (
        main(
            [
                "evaluate",
                str(tmp_path / "run"),
                "--episodes",
                "20",
                "--inner-steps",
                "3",
                "--json",
                str(tmp_path / "eval.json"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "fomaml on {'name': 'sinusoid', 'k_shot': 5, 'n_query': 10} (step 4): mse" in out
    assert json.loads((tmp_path / "eval.json").read_text())["step"] == 4


def test_resume_continues_a_finished_run(tmp_path, capsys):
    args = ["train", "--learner", "maml", *TINY, "--out", str(tmp_path)]
    assert main(args) == 0
    assert main([*args[:-2], "--steps", "6", "--out", str(tmp_path), "--resume"]) == 0
    assert "trained 2 steps" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--learner", "mamll", "--out", "x"], "unknown learner 'mamll'"),
        (["train", "--family", "weather", "--out", "x"], "unknown task family 'weather'"),
        (["train", "--family", "omniglot", "--learner", "protonet", "--out", "x"], "needs --data"),
        (
            ["train", "--family", "omniglot", "--data", "/nonexistent", "--learner", "protonet", "--out", "x"],
            "/nonexistent",
        ),
        (["train", "--learner", "protonet", "--out", "x"], "classifies"),
        (["bench", "nothing", "--json", "x.json"], "unknown benchmark 'nothing'"),
        (["evaluate", "/nonexistent-run"], "not a metamap checkpoint"),
    ],
)
def test_mistakes_end_with_one_clear_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("metamap: error:") and message in err
    assert "Traceback" not in err


def test_evaluate_a_checkpoint_of_another_model_is_refused(tmp_path, capsys):
    assert main(["train", *TINY, "--episodes", "0", "--out", str(tmp_path)]) == 0
    config_file = next((tmp_path / "checkpoints").glob("step-*")) / "state.json"
    state = json.loads(config_file.read_text())
    state["config"]["run"]["model"]["hidden"] = [16]
    config_file.write_text(json.dumps(state))
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "another model" in capsys.readouterr().err


@pytest.mark.slow
def test_python_dash_m_entry_point():
    done = subprocess.run([sys.executable, "-m", "metamap", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("metamap ")


def test_demo_quick(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "maml" in out and "persistence" in out and "historical_average" in out
    for plot in ("error_by_horizon.png", "forecasts.png"):
        assert (tmp_path / plot).stat().st_size > 10_000
    results = json.loads((tmp_path / "demo.json").read_text())["results"]
    assert set(results) == {"maml", "persistence", "historical_average", "pretrain"}
    assert all(0 < r["errors"]["1h"]["mae"] < 30 for r in results.values())


def test_unknown_or_missing_device(tmp_path, capsys):
    assert main(["train", *TINY, "--device", "tpu", "--out", str(tmp_path)]) == 2
    assert "unknown device 'tpu'" in capsys.readouterr().err
    import torch

    if not torch.cuda.is_available():
        assert main(["train", *TINY, "--device", "cuda", "--out", str(tmp_path)]) == 2
        assert "sees no GPU" in capsys.readouterr().err


def test_evaluate_with_another_shot(tmp_path, capsys):
    assert main(["train", *TINY, "--episodes", "0", "--out", str(tmp_path)]) == 0
    assert (
        main(["evaluate", str(tmp_path), "--episodes", "10", "--k-shot", "10", "--json", str(tmp_path / "e.json")]) == 0
    )
    assert json.loads((tmp_path / "e.json").read_text())["test_family"]["k_shot"] == 10


@pytest.mark.slow
def test_protonet_on_omniglot_trained_and_tested_at_another_way(tmp_path, shared_data, capsys):
    data = str(shared_data / "omniglot")
    args = [
        "train",
        "--family",
        "omniglot",
        "--data",
        data,
        "--learner",
        "protonet",
        "--hidden",
        "8",
        "--n-way",
        "10",
        "--k-shot",
        "1",
        "--n-query",
        "2",
        "--meta-batch",
        "2",
        "--steps",
        "2",
        "--episodes",
        "0",
        "--no-progress",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 0
    assert main(["evaluate", str(tmp_path), "--episodes", "4", "--n-way", "5"]) == 0
    assert "'n_way': 5" in capsys.readouterr().out


def test_time_budget_from_the_command_line(tmp_path, capsys):
    assert (
        main(["train", *TINY, "--steps", "100000", "--max-minutes", "0.02", "--episodes", "0", "--out", str(tmp_path)])
        == 0
    )
    steps = int(capsys.readouterr().out.split("trained ")[1].split(" steps")[0])
    assert 0 < steps < 100000


def test_batch_memory_counts_inputs_and_kept_activations():
    from metamap.recipes import batch_memory

    run = {
        "family": {"name": "sinusoid", "k_shot": 5, "n_query": 10},
        "model": {"hidden": [40, 40]},
        "learner": {"name": "maml", "inner_steps": 3},
    }
    # 15 examples per task: 1 input, 2 copies of 81 layer outputs, kept for 3 inner steps + the query pass
    assert batch_memory(run, 25, training=True) == 4 * 25 * 15 * (1 + 2 * 81 * 4)
    assert batch_memory(run, 25, training=False) == 4 * 25 * 15 * (1 + 2 * 81)
    omniglot = {
        "family": {"name": "omniglot", "n_way": 5, "k_shot": 1, "n_query": 15},
        "model": {"hidden": 64},
        "learner": {"name": "protonet"},
    }
    assert batch_memory(omniglot, 1, training=True) == 4 * 80 * (28 * 28 + 2 * 64 * (784 + 196 + 49 + 9))


def test_a_batch_beyond_available_memory_is_refused_before_any_data(tmp_path, capsys, monkeypatch):
    import metamap.arguments

    monkeypatch.setattr(metamap.arguments, "available_memory", lambda device="cpu": 2**30)
    argv = [
        "train",
        "--family",
        "omniglot",
        "--data",
        str(tmp_path / "absent"),
        "--learner",
        "maml",
        "--meta-batch",
        "32",
        "--out",
        str(tmp_path / "run"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs about" in err and "1.0 GiB are available on cpu" in err
    assert "--meta-batch" in err and not (tmp_path / "run").exists()


def test_available_memory_is_what_the_kernel_reports():
    from metamap.arguments import available_memory

    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < available_memory() <= total


def test_evaluate_json_may_not_replace_the_runs_checkpoint(tmp_path, capsys):
    assert main(["train", *TINY, "--episodes", "0", "--out", str(tmp_path)]) == 0
    pointer = tmp_path / "checkpoints" / "latest"
    before = pointer.read_bytes()
    assert main(["evaluate", str(tmp_path), "--episodes", "2", "--json", str(pointer)]) == 2
    assert "is the input file" in capsys.readouterr().err and pointer.read_bytes() == before
    for _ in range(2):  # a score written beside the run may be written again
        assert main(["evaluate", str(tmp_path), "--episodes", "2", "--json", str(tmp_path / "e.json")]) == 0
