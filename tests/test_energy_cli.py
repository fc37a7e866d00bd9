"""``metamap energy solve | train | adapt`` end to end on case30, and their one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from metamap.cli import main
from metamap.energy.dcopf import load_case
from metamap.energy.learned import FINETUNE_CANDIDATES


@pytest.fixture(scope="module")
def case30():
    return load_case("case30")


def _loads(case, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = case.base_load * rng.uniform(0.5, 0.9, size=(n, 1)) * rng.uniform(0.95, 1.05, size=(n, case.n_load))
    return pd.DataFrame(values, columns=[f"load_{i}" for i in range(case.n_load)])


def test_solve_train_adapt(case30, tmp_path, capsys):
    _loads(case30, 120, 0).to_csv(tmp_path / "train.csv", index=False)
    test = _loads(case30, 6, 1)
    test.loc[5] = case30.base_load * 100  # beyond the generation capacity: must be reported, not answered
    test.to_parquet(tmp_path / "test.parquet")
    assert (
        main(
            [
                "energy",
                "solve",
                "--case",
                "case30",
                "--loads",
                str(tmp_path / "test.parquet"),
                "--out",
                str(tmp_path / "exact"),
            ]
        )
        == 0
    )
    exact = pd.read_csv(tmp_path / "exact" / "scenarios.csv")
    assert list(exact.path) == ["fallback"] * 5 + ["infeasible"]
    assert np.isnan(exact.cost[5])
    assert (
        main(
            [
                "energy",
                "train",
                "--case",
                "case30",
                "--loads",
                str(tmp_path / "train.csv"),
                "--out",
                str(tmp_path / "run"),
                "--steps",
                "200",
                "--hidden",
                "32",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "energy",
                "solve",
                "--case",
                "case30",
                "--loads",
                str(tmp_path / "test.parquet"),
                "--model",
                str(tmp_path / "run"),
                "--out",
                str(tmp_path / "learned"),
            ]
        )
        == 0
    )
    learned = pd.read_csv(tmp_path / "learned" / "scenarios.csv")
    summary = json.loads((tmp_path / "learned" / "summary.json").read_text())
    assert summary["violations_returned"] == 0 and summary["paths"]["infeasible"] == 1
    stages = summary["feasible"]
    assert stages["as_produced"] == summary["paths"]["learned"]
    assert stages["after_correction"] == stages["as_produced"] + summary["paths"]["repaired"]
    assert stages["as_produced"] <= stages["after_correction"] <= stages["after_fallback"] == 5
    assert 0 <= stages["raw_network"] <= 5
    held = json.loads((tmp_path / "run" / "model.json").read_text())["held_out"]
    assert held["scenarios"] == 12 and held["feasible"]["after_fallback"] == 12  # 10% of the 120, all feasible
    assert -1e-9 <= held["gap_pct_mean"] <= held["gap_pct_p99"] + 1e-12 <= held["gap_pct_max"] + 2e-12
    assert set(learned.path[:5]) <= {"learned", "repaired", "fallback"}
    assert (learned.cost[:5] >= exact.cost[:5] - 1e-6).all()
    assert (learned[["balance_violation_mw", "gen_violation_mw", "line_violation_mw"]][:5] <= 1e-4).all().all()
    dispatch = pd.read_csv(tmp_path / "learned" / "dispatch.csv")
    assert dispatch.shape == (6, case30.n_gen + 1)
    pd.DataFrame({"multiplier": [0.6, 0.7]}).to_csv(tmp_path / "new.csv", index=False)
    assert (
        main(
            [
                "energy",
                "adapt",
                "--run",
                str(tmp_path / "run"),
                "--loads",
                str(tmp_path / "new.csv"),
                "--out",
                str(tmp_path / "adapted"),
                "--steps",
                "5",
                "--lr",
                "1e-3",
            ]
        )
        == 0
    )
    adapted = json.loads((tmp_path / "adapted" / "model.json").read_text())
    assert adapted["case"] == "case30" and (adapted["adapt_steps"], adapted["adapt_lr"]) == (5, 1e-3)
    assert adapted["adapt_chosen_on_holdout"] is None
    adapt = ["energy", "adapt", "--run", str(tmp_path / "run"), "--loads", str(tmp_path / "new.csv")]
    assert main([*adapt, "--out", str(tmp_path / "half"), "--steps", "5"]) == 2
    assert "pass both --steps and --lr, or neither" in capsys.readouterr().err
    assert main([*adapt, "--out", str(tmp_path / "few")]) == 2  # 2 scenarios: none to hold out
    assert "2 solved scenarios; choosing the fine-tuning settings needs at least 5" in capsys.readouterr().err
    pd.DataFrame({"multiplier": [0.6, 0.65, 0.7, 0.75, 0.8, 0.85]}).to_csv(tmp_path / "six.csv", index=False)
    adapt[-1] = str(tmp_path / "six.csv")
    assert main([*adapt, "--out", str(tmp_path / "chosen")]) == 0
    chosen = json.loads((tmp_path / "chosen" / "model.json").read_text())
    record = chosen["adapt_chosen_on_holdout"]
    assert len(record["tried"]) == len(FINETUNE_CANDIDATES) and record["chosen"] in FINETUNE_CANDIDATES
    assert record["score"] == min(t["score"] for t in record["tried"] if t["score"] is not None)
    assert {"steps": chosen["adapt_steps"], "lr": chosen["adapt_lr"]} == record["chosen"]
    assert "chosen on held-out scenarios" in capsys.readouterr().out


@pytest.mark.parametrize(
    "make, argv, message",
    [
        (None, ["--case", "case9999"], "unknown case 'case9999'"),
        (lambda c: pd.DataFrame({"x": [1.0]}), [], "expected columns load_0..load_19"),
        (lambda c: -_loads(c, 2, 0), [], ">= 0 MW"),
        (lambda c: _loads(c, 2, 0).assign(load_3=np.nan), [], "finite"),
        (lambda c: _loads(c, 2, 0).assign(load_3="many"), [], "must be numbers"),
    ],
)
def test_mistakes_end_with_one_clear_line(case30, tmp_path, capsys, make, argv, message):
    path = tmp_path / "loads.csv"
    (make(case30) if make else _loads(case30, 2, 0)).to_csv(path, index=False)
    code = main(["energy", "solve", "--case", "case30", "--loads", str(path), "--out", str(tmp_path / "o"), *argv])
    assert code == 2
    assert message in capsys.readouterr().err


def test_wrong_suffix_and_missing_model(tmp_path, capsys):
    (tmp_path / "loads.txt").write_text("load_0\n1\n")
    assert (
        main(
            [
                "energy",
                "solve",
                "--case",
                "case30",
                "--loads",
                str(tmp_path / "loads.txt"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "expected a .csv or .parquet" in capsys.readouterr().err
    assert (
        main(
            [
                "energy",
                "adapt",
                "--run",
                str(tmp_path / "nothing"),
                "--loads",
                str(tmp_path / "loads.txt"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "not a readable energy model" in capsys.readouterr().err
