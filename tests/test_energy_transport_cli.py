"""``metamap energy transport``: plans of generated instances against scipy's linprog, the files, bad input."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linprog

from metamap.cli import main
from metamap.energy.dcopf import SolverError
from metamap.energy.transport import TransportProblem, random_problems, solve_emd


def _write(folder, cost: np.ndarray, demand: np.ndarray, supply: np.ndarray, rng: np.random.Generator):
    """The instance as the three CSV files, named points; supply and demand rows shuffled (matched by name)."""
    demand_names = [f"city {i}" for i in range(len(demand))]
    supply_names = [f"plant-{j}" for j in range(len(supply))]
    pd.DataFrame(cost, index=pd.Index(demand_names, name="demand"), columns=supply_names).to_csv(folder / "c.csv")
    for name, names, amounts in (("s.csv", supply_names, supply), ("d.csv", demand_names, demand)):
        order = rng.permutation(len(names))
        pd.DataFrame({"name": np.array(names)[order], "amount": amounts[order]}).to_csv(folder / name, index=False)
    return demand_names, supply_names


def _run(folder, *extra: str) -> int:
    files = ["--costs", "c.csv", "--supply", "s.csv", "--demand", "d.csv", "--out", "plan.csv"]
    return main(["energy", "transport", *[str(folder / a) if a.endswith(".csv") else a for a in files], *extra])


def _linprog_optimum(cost: np.ndarray, demand: np.ndarray, supply: np.ndarray) -> float:
    n, m = cost.shape
    a_eq = np.kron(np.eye(n), np.ones(m))  # row i: sum_j x_ij = d_i
    a_ub = np.kron(np.ones(n), np.eye(m))  # row j: sum_i x_ij <= s_j
    result = linprog(cost.ravel(), A_ub=a_ub, b_ub=supply, A_eq=a_eq, b_eq=demand, method="highs-ipm")
    assert result.status == 0
    return float(result.fun)


@pytest.mark.parametrize("method", ["emd", "highs"])
@pytest.mark.parametrize("n, m, family", [(4, 3, "uniform"), (12, 7, "euclid"), (25, 30, "uniform")])
def test_plans_match_linprog(tmp_path, capsys, method, n, m, family):
    rng = np.random.default_rng(n * m)
    problem = random_problems(n, m, 1, rng, family)[0]
    demand_names, supply_names = _write(tmp_path, problem.cost, problem.demand, problem.supply, rng)
    assert _run(tmp_path, "--method", method) == 0
    summary = json.loads((tmp_path / "plan.json").read_text())
    assert json.loads(capsys.readouterr().out) == summary
    optimum = _linprog_optimum(problem.cost, problem.demand, problem.supply)
    assert summary["total_cost"] == pytest.approx(optimum, rel=1e-7)
    assert (summary["method"], summary["status"]) == (method, "optimal")
    plan = pd.read_csv(tmp_path / "plan.csv", dtype={"demand": str, "supply": str})
    assert list(plan.columns) == ["demand", "supply", "amount"] and (plan.amount > 0).all()
    matrix = plan.pivot_table(index="demand", columns="supply", values="amount", aggfunc="sum", fill_value=0.0)
    matrix = matrix.reindex(index=demand_names, columns=supply_names, fill_value=0.0).to_numpy()
    assert problem.total_cost(matrix) == pytest.approx(optimum, rel=1e-7)  # the names carry the right amounts
    assert problem.violation(matrix) < 1e-7


def test_plan_by_hand_with_a_header_less_demand_file(tmp_path):
    # demand points need 1 each; s1 (2 units) costs 1 to every city, s2 (5 units) costs 3, 1, 0.5:
    # the optimum sends d1 <- s1, d2 <- s2, d3 <- s2 at cost 1 + 1 + 0.5.
    (tmp_path / "c.csv").write_text("to \\ from,s1,s2\nd1,1,3\nd2,2,1\nd3,1,0.5\n")
    (tmp_path / "s.csv").write_text("name,amount\ns2,5\ns1,2\n")
    (tmp_path / "d.csv").write_text("d3,1\nd1,1\nd2,1\n")
    assert _run(tmp_path) == 0
    plan = pd.read_csv(tmp_path / "plan.csv")
    assert sorted(map(tuple, plan[["demand", "supply"]].to_numpy())) == [("d1", "s1"), ("d2", "s2"), ("d3", "s2")]
    np.testing.assert_allclose(plan.amount, 1.0)
    summary = json.loads((tmp_path / "plan.json").read_text())
    assert summary["total_cost"] == pytest.approx(2.5)
    assert (summary["total_demand"], summary["total_supply"]) == (3.0, 7.0)


GOOD = {
    "c.csv": "demand,s1,s2\nd1,1,3\nd2,2,1\n",
    "s.csv": "name,amount\ns1,2\ns2,2\n",
    "d.csv": "name,amount\nd1,1\nd2,1\n",
}


@pytest.mark.parametrize(
    "file, text, message",
    [
        ("s.csv", "name,amount\ns1,2\n", "supply file .* no amount for the supply points 's2', which are columns"),
        ("d.csv", "name,amount\nd1,1\nd2,1\nd9,1\n", "the demand points 'd9' are not rows of the costs file"),
        ("d.csv", "name,amount\nd1,-1\nd2,1\n", "the amount of 'd1' is '-1'; expected a finite number >= 0"),
        ("s.csv", "name,amount\ns1,lots\ns2,1\n", "the amount of 's1' is 'lots'; expected a finite number"),
        ("c.csv", "demand,s1,s2\nd1,1,inf\nd2,2,1\n", "the cost from 's2' to 'd1' is 'inf'; expected a finite"),
        ("c.csv", "demand,s1,s2\nd1,1,\nd2,2,1\n", "the cost from 's2' to 'd1' is ''; expected a finite"),
        ("c.csv", "demand,s1,s1\nd1,1,3\nd2,2,1\n", "the supply point 's1' appears more than once"),
        ("d.csv", "name,amount\nd1,3\nd2,2\n", "infeasible: the total demand 5 .* exceeds the total supply 4"),
        ("s.csv", "name,amount,unit\ns1,2,t\ns2,2,t\n", "expected two columns \\(name, amount\\), got 3"),
        ("c.csv", "demand\n", "expected a header row of supply points and at least one row"),
    ],
)
def test_bad_files_end_in_one_line(tmp_path, capsys, file, text, message):
    for name, good in GOOD.items():
        (tmp_path / name).write_text(text if name == file else good)
    assert _run(tmp_path) == 2
    err = capsys.readouterr().err
    assert err.startswith("metamap: error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    assert not (tmp_path / "plan.csv").exists() and not (tmp_path / "plan.json").exists()


def test_bad_paths_end_in_one_line(tmp_path, capsys):
    for name, good in GOOD.items():
        (tmp_path / name).write_text(good)
    base = ["energy", "transport", "--costs", str(tmp_path / "c.csv"), "--supply", str(tmp_path / "s.csv")]
    assert main([*base, "--demand", str(tmp_path / "d.csv"), "--out", str(tmp_path / "plan.txt")]) == 2
    assert "expected a .csv file name, got '.txt'" in capsys.readouterr().err
    assert main([*base, "--demand", str(tmp_path / "d.csv"), "--out", str(tmp_path / "c.csv")]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert main([*base, "--demand", str(tmp_path / "none.csv"), "--out", str(tmp_path / "plan.csv")]) == 2
    assert "demand file" in capsys.readouterr().err


def test_emd_that_stops_early_is_a_solver_error_not_a_plan():
    problem = random_problems(30, 30, 1, np.random.default_rng(0))[0]
    with pytest.raises(SolverError, match="without an optimal plan"):
        solve_emd(problem, max_iterations=3)


def test_nothing_to_transport():
    problem = TransportProblem(np.ones((2, 2)), np.zeros(2), np.ones(2))
    np.testing.assert_array_equal(solve_emd(problem), np.zeros((2, 2)))
