"""Transportation: instances solved by hand, ot.emd against HiGHS, the rounding is always feasible, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metamap.energy.dcopf import InfeasibleError
from metamap.energy.transport import (
    TransportProblem,
    random_problems,
    round_to_feasible,
    sinkhorn_plans,
    solve_emd,
    solve_highs,
)
from metamap.errors import DataError


def test_two_by_two_by_hand():
    problem = TransportProblem([[1.0, 3.0], [2.0, 1.0]], [1.0, 1.0], [1.0, 1.0])
    for solve in (solve_emd, solve_highs):
        plan = solve(problem)
        np.testing.assert_allclose(plan, np.eye(2), atol=1e-9)
        assert problem.total_cost(plan) == pytest.approx(2.0)


def test_three_by_two_with_slack_supply_by_hand():
    # demands 1, 1, 1; supplies 2 (costs 1) and 5 (costs 2, 2, 0.5): demand 2 goes to supplier 1,
    # demands 0 and 1 to supplier 0 -> cost 1 + 1 + 0.5; supplier 1 keeps 4 units of slack.
    problem = TransportProblem([[1.0, 2.0], [1.0, 2.0], [1.0, 0.5]], [1.0, 1.0, 1.0], [2.0, 5.0])
    for solve in (solve_emd, solve_highs):
        plan = solve(problem)
        assert problem.total_cost(plan) == pytest.approx(2.5)
        assert problem.violation(plan) < 1e-9


@pytest.mark.parametrize("n, m, family", [(3, 2, "euclid"), (10, 20, "uniform"), (20, 40, "euclid")])
def test_emd_and_highs_agree(n, m, family):
    for problem in random_problems(n, m, 3, np.random.default_rng(n * m), family):
        emd, highs = solve_emd(problem), solve_highs(problem)
        assert problem.total_cost(emd) == pytest.approx(problem.total_cost(highs), rel=1e-8)
        assert problem.violation(emd) < 1e-8 and problem.violation(highs) < 1e-8


def test_sinkhorn_then_rounding_is_feasible_and_close():
    problems = random_problems(10, 20, 4, np.random.default_rng(0))
    plans = sinkhorn_plans(problems, epsilon=0.005, iterations=500).numpy()
    for problem, plan in zip(problems, plans):
        fixed = round_to_feasible(problem, plan)
        optimum = problem.total_cost(solve_emd(problem))
        assert problem.violation(fixed) < 1e-9
        assert optimum - 1e-9 <= problem.total_cost(fixed) <= optimum * 1.1


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 6), m=st.integers(1, 6), slack=st.floats(1.0, 3.0))
def test_rounding_always_returns_a_feasible_plan(seed, n, m, slack):
    rng = np.random.default_rng(seed)
    demand = rng.uniform(0, 2, n)
    supply = rng.dirichlet(np.ones(m)) * demand.sum() * slack
    problem = TransportProblem(rng.uniform(size=(n, m)), demand, supply)
    plan = rng.normal(0, 2, size=(n, m))  # anything, negative entries included
    assert problem.violation(round_to_feasible(problem, plan)) < 1e-9


@pytest.mark.parametrize(
    "cost, demand, supply, error, message",
    [
        ([[np.nan]], [1.0], [1.0], DataError, "cost holds NaN"),
        ([[1.0]], [-1.0], [1.0], DataError, "demand must be >= 0"),
        ([[1.0, 2.0]], [1.0], [1.0], DataError, "expected cost \\[n, m\\]"),
        ([[1.0]], [2.0], [1.0], InfeasibleError, "exceeds total supply"),
    ],
)
def test_bad_instances(cost, demand, supply, error, message):
    with pytest.raises(error, match=message):
        TransportProblem(cost, demand, supply)
