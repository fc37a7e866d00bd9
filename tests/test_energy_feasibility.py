"""Check / repair / fallback: repair is always feasible, every path is taken when it should be, gaps."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metamap.energy.dcopf import DCOPFCase, case_from_arrays, load_case
from metamap.energy.feasibility import (
    PATHS,
    TOLERANCE_MW,
    check,
    complete,
    guaranteed_dispatch,
    optimality_gap,
    repair,
)
from metamap.energy.highs import WarmDCOPF
from metamap.errors import DataError


def random_case(seed: int, n_gen: int, n_load: int) -> DCOPFCase:
    """A random 5-bus ring with random generators and loads (no line limits)."""
    rng = np.random.default_rng(seed)
    n_bus = 5
    f, t = np.arange(n_bus), (np.arange(n_bus) + 1) % n_bus
    x = rng.uniform(0.05, 0.5, n_bus)
    pmin = rng.uniform(0, 5, n_gen) * (rng.random(n_gen) < 0.5)
    return case_from_arrays(
        "random",
        gen_bus=rng.integers(0, n_bus, n_gen),
        pmin=pmin,
        pmax=pmin + rng.uniform(1, 50, n_gen),
        c1=rng.uniform(1, 40, n_gen),
        c2=rng.uniform(0, 0.1, n_gen),
        load_bus=rng.integers(0, n_bus, n_load),
        base_load=rng.uniform(1, 10, n_load),
        branch_from=f,
        branch_to=t,
        branch_x=x,
    )


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_gen=st.integers(1, 6),
    n_load=st.integers(1, 4),
    fraction=st.floats(0.0, 1.0),
    scale=st.floats(0.0, 1e4),
    nan=st.booleans(),
)
def test_repair_always_returns_a_feasible_point(seed, n_gen, n_load, fraction, scale, nan):
    case = random_case(seed, n_gen, n_load)
    rng = np.random.default_rng(seed + 1)
    # a total load anywhere in the generation range, split at random over the loads
    total = case.pmin.sum() + fraction * (case.pmax.sum() - case.pmin.sum())
    pd = (rng.dirichlet(np.ones(n_load)) * total)[None]
    pg = rng.normal(0, scale, size=(1, n_gen))
    if nan:
        pg[0, 0] = np.nan
    fixed = repair(case, pd, pg)
    violations = check(case, pd, fixed)
    assert violations.ok.all(), (violations, fixed, pd)


def _case30():
    return load_case("case30", line_limits="base")


def test_exact_answers_pass_as_learned_and_balance_errors_are_repaired():
    case = _case30()
    exact = WarmDCOPF(case)
    pd = case.base_load[None] * np.array([[0.9], [0.8]])
    best = np.stack([exact.solve(p).dispatch for p in pd])
    result = guaranteed_dispatch(case, pd, lambda loads: best, exact)
    assert result.counts()["learned"] == 2
    nudged = guaranteed_dispatch(case, pd, lambda loads: best * 0.999, exact)
    assert nudged.counts()["repaired"] == 2
    assert nudged.n_violations == 0
    gap = optimality_gap(nudged.cost, result.cost)
    assert (gap >= -1e-9).all() and (gap < 1e-3).all()


def test_a_prediction_the_check_rejects_falls_back_to_the_exact_solver():
    case = _case30()
    exact = WarmDCOPF(case)
    pd = case.base_load[None] * 0.9
    # a NaN prediction fails the check; repair or the exact solver must still give a feasible answer
    bad = np.full((1, case.n_gen), np.nan)
    result = guaranteed_dispatch(case, pd, lambda loads: bad, exact)
    assert result.path[0] in (PATHS.index("repaired"), PATHS.index("fallback"))
    assert result.n_violations == 0
    # all generation on the largest unit, against a line limit that binds at the optimum:
    # the answer must come from repair (feasible) or from the exact solver (optimal)
    tight = load_case("case30", line_limits="base")
    tight_fmax = tight.fmax.copy()
    flows = np.abs(tight.flows(exact.solve(pd[0]).dispatch, pd[0]))
    line = int(np.argmax(flows / tight_fmax))
    tight_fmax[line] = flows[line] * 1.0001  # binding at the optimum
    tight = replace(tight, fmax=tight_fmax)
    tight_exact = WarmDCOPF(tight)
    optimum = tight_exact.solve(pd[0])
    lopsided = np.zeros((1, tight.n_gen))
    lopsided[0, np.argmax(tight.pmax)] = pd.sum()
    result = guaranteed_dispatch(tight, pd, lambda loads: lopsided, tight_exact)
    assert result.n_violations == 0
    assert result.path[0] != PATHS.index("learned")
    if result.path[0] == PATHS.index("fallback"):
        assert result.cost[0] == pytest.approx(optimum.cost, rel=1e-7)
    assert check(tight, pd, result.dispatch).ok.all()


def test_forced_fallback_equals_the_exact_solution():
    case = _case30()
    exact = WarmDCOPF(case)
    pd = case.base_load[None] * np.array([[0.7], [0.95]])
    result = guaranteed_dispatch(case, pd, None, exact)
    assert result.counts()["fallback"] == 2
    for k in range(2):
        assert result.cost[k] == pytest.approx(exact.solve(pd[k]).cost, rel=1e-9)


def test_infeasible_scenarios_are_reported_not_answered():
    case = _case30()
    pd = np.stack([case.base_load * 0.8, case.base_load * 100])
    result = guaranteed_dispatch(case, pd, lambda loads: np.zeros((2, case.n_gen)), WarmDCOPF(case))
    assert result.path[1] == PATHS.index("infeasible")
    assert np.isnan(result.dispatch[1]).all() and np.isnan(result.cost[1])
    assert result.path[0] != PATHS.index("infeasible")
    assert result.n_violations == 0


def test_bad_loads_raise_before_solving():
    case = _case30()
    with pytest.raises(DataError, match=">= 0 MW"):
        guaranteed_dispatch(case, -case.base_load[None], None, WarmDCOPF(case))


def test_check_flags_each_kind_of_violation():
    case = random_case(0, 3, 2)
    pd = case.base_load[None]
    pg = repair(case, pd, np.zeros((1, 3)))
    assert check(case, pd, pg).ok.all()
    assert check(case, pd, pg + 1.0).balance[0] == pytest.approx(3.0)
    over = pg.copy()
    over[0, 0] = case.pmax[0] + 1.0
    assert check(case, pd, over).gen[0] >= 1.0 - TOLERANCE_MW


def test_optimality_gap_by_hand():
    np.testing.assert_allclose(optimality_gap(np.array([101.0, 50.0]), np.array([100.0, 50.0])), [0.01, 0.0])


def test_fallback_is_taken_when_repair_cannot_satisfy_the_lines(monkeypatch):
    import metamap.energy.feasibility as feasibility

    case = _case30()
    exact = WarmDCOPF(case)
    pd = case.base_load[None] * 0.9
    optimum = exact.solve(pd[0])
    flows = np.abs(case.flows(optimum.dispatch, pd[0]))
    line = int(np.argmax(flows / case.fmax))
    lopsided = optimum.dispatch[None].copy()
    # shift generation along the most loaded line until it is overloaded (balance kept)
    shift = np.zeros(case.n_gen)
    shift[np.argmax(case.ptdf_gen[line] * np.sign(case.flows(optimum.dispatch, pd[0])[line]))] += 1
    shift[np.argmin(case.ptdf_gen[line] * np.sign(case.flows(optimum.dispatch, pd[0])[line]))] -= 1
    for _ in range(200):
        if not check(case, pd, lopsided).ok.all():
            break
        lopsided = np.clip(lopsided + 5 * shift, case.pmin, case.pmax)
    assert check(case, pd, lopsided).line[0] > TOLERANCE_MW
    monkeypatch.setattr(feasibility, "repair_lines", lambda case, pd, pg: pg)  # a repair that cannot help
    result = guaranteed_dispatch(case, pd, lambda loads: lopsided, exact)
    assert result.counts() == {"learned": 0, "repaired": 0, "fallback": 1, "infeasible": 0, "unsolved": 0}
    assert result.cost[0] == pytest.approx(optimum.cost, rel=1e-9)


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_gen=st.integers(1, 6),
    fraction=st.floats(0.0, 1.0),
    scale=st.floats(0.0, 1e4),
    weighted=st.booleans(),
)
def test_completion_meets_balance_and_limits_and_is_the_nearest_such_point(seed, n_gen, fraction, scale, weighted):
    case = random_case(seed, n_gen, 3)
    rng = np.random.default_rng(seed + 1)
    total = case.pmin.sum() + fraction * (case.pmax.sum() - case.pmin.sum())
    pd = (rng.dirichlet(np.ones(3)) * total)[None]
    pg = rng.normal(0, scale, size=(1, n_gen))
    weight = rng.uniform(1, 20, n_gen) if weighted else np.ones(n_gen)
    done = complete(case, pd, pg, weight)
    violations = check(case, pd, done)
    assert violations.balance[0] < 1e-8 and violations.gen[0] == 0  # no line limits in random_case
    # nearest in the 1/weight norm: other feasible points (the repair's, a perturbed completion) are not closer
    distance = (((done - pg) ** 2) / weight).sum()
    perturbed = complete(case, pd, done + rng.normal(0, 1, size=done.shape), weight)
    for other in (repair(case, pd, pg), perturbed):
        assert check(case, pd, other).ok.all()
        assert distance <= (((other - pg) ** 2) / weight).sum() + 1e-6 * (1 + distance)


def test_completion_against_a_quadratic_program():
    """The completion equals the weighted projection solved as a QP by scipy (SLSQP) on case30's units."""
    from scipy.optimize import minimize

    case = _case30()
    rng = np.random.default_rng(3)
    pd = case.base_load[None] * 0.8
    pg = rng.normal(case.pmax / 2, 30, size=(1, case.n_gen))
    weight = rng.uniform(1, 10, case.n_gen)
    done = complete(case, pd, pg, weight)[0]
    demand = float(case.demand(pd)[0])
    best = minimize(
        lambda x: (((x - pg[0]) ** 2) / weight).sum(),
        np.clip(pg[0], case.pmin, case.pmax),
        bounds=list(zip(case.pmin, case.pmax)),
        constraints=[{"type": "eq", "fun": lambda x: x.sum() - demand}],
        method="SLSQP",
        options={"ftol": 1e-12, "maxiter": 500},
    )
    assert best.success
    np.testing.assert_allclose(done, best.x, atol=1e-4)
    assert done.sum() == pytest.approx(demand, abs=1e-8)
