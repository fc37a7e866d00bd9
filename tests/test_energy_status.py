"""The HiGHS status map: a failed run is retried cold, a failure is never called infeasible."""

from __future__ import annotations

import numpy as np
import pytest

from energy_cases import tiny_case
from metamap.energy.dcopf import InfeasibleError, SolverError
from metamap.energy.highs import RETRIES, WarmDCOPF


def failing_first(monkeypatch, solver: WarmDCOPF, failures: int) -> list[bool]:
    """Make the first ``failures`` HiGHS runs report a failure; returns the ``cold`` flag of every run."""
    real, calls = WarmDCOPF._run, []

    def run(self, options, cold):
        calls.append(cold)
        if len(calls) <= failures:
            return "failed", "Not Set"
        return real(self, options, cold)

    monkeypatch.setattr(WarmDCOPF, "_run", run)
    return calls


def test_a_failed_warm_run_is_retried_cold_and_answers(monkeypatch):
    case = tiny_case()
    expected = WarmDCOPF(case).solve(np.array([10.0]))
    solver = WarmDCOPF(case)
    calls = failing_first(monkeypatch, solver, failures=1)
    got = solver.solve(np.array([10.0]))
    assert calls == [False, True]
    assert got.attempts == 2
    np.testing.assert_allclose(got.dispatch, expected.dispatch, atol=1e-7)
    assert got.cost == pytest.approx(expected.cost, rel=1e-9)


def test_a_failure_on_every_run_is_a_solver_error_not_infeasible(monkeypatch):
    solver = WarmDCOPF(tiny_case())
    calls = failing_first(monkeypatch, solver, failures=100)
    with pytest.raises(SolverError, match="nothing is proved") as info:
        solver.solve(np.array([10.0]))
    assert not isinstance(info.value, InfeasibleError)
    assert len(calls) == 1 + sum(1 for r in RETRIES if not r[2])  # a QP skips the LP-only retries


def test_solve_many_reports_failed_and_infeasible_apart(monkeypatch):
    solver = WarmDCOPF(tiny_case(fmax=np.array([6.0, 6.0, 6.0])))
    loads = np.array([[10.0], [10.0], [100.0]])  # 100 MW breaks the limits: proved infeasible
    failing_first(monkeypatch, solver, failures=1 + sum(1 for r in RETRIES if not r[2]))
    dispatch, cost, _, status = solver.solve_many(loads)
    assert status.tolist() == ["failed", "optimal", "infeasible"]
    assert np.isnan(cost[0]) and np.isfinite(cost[1]) and np.isnan(cost[2])
    np.testing.assert_allclose(dispatch[1].sum(), 10.0, atol=1e-7)
