"""``metamap physics fit | run`` end to end on tiny inputs, and their errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from metamap.cli import main
from metamap.physics.systems import SYSTEMS


def test_fit_recovers_the_parameters_of_a_csv(tmp_path, capsys):
    system = SYSTEMS["lotka_volterra"]
    t = np.linspace(0, 10, 30)
    states = system.simulate([1.2, 0.7, 0.9, 1.0], t)
    data = tmp_path / "obs.csv"
    pd.DataFrame({"t": t, "prey": states[:, 0], "predator": states[:, 1]}).to_csv(data, index=False)
    assert (
        main(
            [
                "physics",
                "fit",
                "--system",
                "lotka_volterra",
                "--data",
                str(data),
                "--out",
                str(tmp_path),
                "--starts",
                "3",
            ]
        )
        == 0
    )
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert [fit["parameters"][n] for n in system.names] == pytest.approx([1.2, 0.7, 0.9, 1.0], rel=1e-3)
    assert "alpha = 1.2" in capsys.readouterr().out


def test_fit_errors_name_the_missing_columns(tmp_path, capsys):
    data = tmp_path / "obs.csv"
    pd.DataFrame({"t": [0.0, 1.0], "u": [1.0, 0.5]}).to_csv(data, index=False)
    assert main(["physics", "fit", "--system", "heat", "--data", str(data), "--out", str(tmp_path)]) == 2
    assert "missing ['x']" in capsys.readouterr().err
    assert main(["physics", "fit", "--system", "spring", "--data", str(data), "--out", str(tmp_path)]) == 2
    assert "unknown physical system 'spring'" in capsys.readouterr().err


@pytest.mark.slow
def test_run_end_to_end_on_a_tiny_budget(tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            [
                "physics",
                "run",
                "--system",
                "heat",
                "--out",
                str(out),
                "--steps",
                "3",
                "--test-tasks",
                "3",
                "--train-systems",
                "20",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["mse"]) == {"maml", "metasgd", "pretrain_finetune", "scratch", "least_squares", "hybrid"}
    assert metrics["param_rel_error"]["least_squares"]["mean"] < 0.5
    assert metrics["param_rel_error"]["hybrid"]["mean"] < 0.5  # one refined start from the proposal
    evaluations = metrics["function_evaluations"]  # 1 start against 4
    assert 0 < evaluations["hybrid"]["mean"] < evaluations["least_squares"]["mean"]
    assert (out / "trajectories.png").stat().st_size > 0
    tuning = metrics["tuning_on_val"]  # every network method's grid, its chosen setting, the keys at an edge
    assert set(tuning) == {"maml", "metasgd", "pretrain_finetune", "scratch"}
    assert tuning["pretrain_finetune"]["grid"] == {
        "steps": [10, 50, 200, 1000],
        "lr": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
    }
    for record in tuning.values():
        edges = [k for k, values in record["grid"].items() if record["chosen"][k] in (values[0], values[-1])]
        assert record["at_edge"] == edges
