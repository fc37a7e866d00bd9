"""``metamap physics fit --rhs`` on a user's own ODE: known parameters recovered, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from metamap.cli import main
from metamap.physics.user_ode import UserODE

ODE_SOURCE = """
import numpy as np

def decay_chain(t, y, p):
    return np.array([-p["k1"] * y[0], p["k1"] * y[0] - p["k2"] * y[1]])

def two_args(t, y):
    return y

def wrong_shape(t, y, p):
    return np.zeros(3)

def not_finite(t, y, p):
    return np.full(2, np.nan)
"""
TRUTH = {"k1": 0.8, "k2": 0.3}


def _decay_chain(t, y, p):
    return np.array([-p["k1"] * y[0], p["k1"] * y[0] - p["k2"] * y[1]])


@pytest.fixture
def files(tmp_path):
    (tmp_path / "my_ode.py").write_text(ODE_SOURCE)
    t = np.linspace(0.0, 8.0, 25)
    states = UserODE(_decay_chain, {"k1": (0.1, 2.0), "k2": (0.1, 2.0)}, 2).simulate(
        np.array(list(TRUTH.values())), np.array([1.0, 0.2]), t
    )
    noisy = states + 0.002 * np.random.default_rng(0).standard_normal(states.shape)
    pd.DataFrame({"t": t, "A": noisy[:, 0], "B": noisy[:, 1]}).to_csv(tmp_path / "traj.csv", index=False)
    return tmp_path


def _fit(files, *extra):
    return main(["physics", "fit", "--data", str(files / "traj.csv"), "--out", str(files / "run"), *extra])


def test_fit_recovers_the_known_parameters_of_a_generated_ode(files, capsys):
    rhs = f"{files / 'my_ode.py'}:decay_chain"
    assert _fit(files, "--rhs", rhs, "--params", "k1=0.1:2,k2=0.1:2", "--starts", "2") == 0
    fit = json.loads((files / "run" / "fit.json").read_text())
    assert fit["parameters"] == pytest.approx(TRUTH, rel=0.02)
    assert fit["initial_state"] == pytest.approx({"A": 1.0, "B": 0.2}, abs=0.01)
    assert fit["residual_rms"] < 0.004 and fit["function_evaluations"] > 0
    assert "k1 = 0.8" in capsys.readouterr().out


@pytest.mark.parametrize(
    "rhs, params, message",
    [
        ("no_such_module_xyz:f", "k1=0:1", "cannot import module 'no_such_module_xyz'"),
        ("{dir}/my_ode.py:missing", "k1=0:1", "has no function 'missing'"),
        ("{dir}/my_ode.py:two_args", "k1=0:1", "must take (t, y, params)"),
        ("{dir}/my_ode.py:wrong_shape", "k1=0:1", "must return dy/dt of shape (2,), got shape (3,)"),
        ("{dir}/my_ode.py:not_finite", "k1=0:1", "returned non-finite values"),
        ("{dir}/my_ode.py:decay_chain", "k1=1:0", "finite lo < hi"),
        ("{dir}/my_ode.py:decay_chain", "k1", "expected name=lo:hi"),
    ],
)
def test_bad_rhs_or_params_is_one_line_exit_2(files, capsys, rhs, params, message):
    assert _fit(files, "--rhs", rhs.format(dir=files), "--params", params) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("metamap: error:")


def test_bad_trajectories_are_one_line_exit_2(files, capsys):
    rhs = f"{files / 'my_ode.py'}:decay_chain"
    frame = pd.read_csv(files / "traj.csv")
    frame.iloc[[3, 4]] = frame.iloc[[4, 3]].to_numpy()  # times out of order
    frame.to_csv(files / "traj.csv", index=False)
    assert _fit(files, "--rhs", rhs, "--params", "k1=0.1:2,k2=0.1:2") == 2
    assert "strictly increasing t" in capsys.readouterr().err
    assert _fit(files, "--rhs", rhs, "--params", "k1=0.1:2", "--state-names", "A,C") == 2
    assert "missing ['C']" in capsys.readouterr().err
    frame.iloc[[3, 4]] = frame.iloc[[4, 3]].to_numpy()
    frame.loc[5, "B"] = np.nan
    frame.to_csv(files / "traj.csv", index=False)
    assert _fit(files, "--rhs", rhs, "--params", "k1=0.1:2,k2=0.1:2") == 2
    assert "row 6 is not" in capsys.readouterr().err
    assert _fit(files, "--rhs", rhs) == 2
    assert "--rhs needs --params" in capsys.readouterr().err
