"""DC-OPF: hand-solved instances, PTDF by hand, agreement with pandapower's own DC OPF, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from metamap.energy.dcopf import DCOPFCase, InfeasibleError, _ppci, _ptdf, load_case, load_net
from metamap.energy.highs import WarmDCOPF
from metamap.errors import ConfigError, DataError


def tiny_case(fmax=np.inf, c1=(0.0, 2.0)) -> DCOPFCase:
    """Three buses in a triangle of equal reactances; gen 0 at bus 0 (slack), gen 1 at bus 1, the load at bus 2."""
    f, t, x = np.array([0, 1, 0]), np.array([1, 2, 2]), np.array([0.1, 0.1, 0.1])
    return DCOPFCase(
        name="tiny",
        gen_bus=np.array([0, 1]),
        pmin=np.zeros(2),
        pmax=np.array([20.0, 20.0]),
        c0=np.zeros(2),
        c1=np.array(c1),
        c2=np.array([1.0, 1.0]),
        load_bus=np.array([2]),
        base_load=np.array([10.0]),
        ptdf=_ptdf(3, f, t, x, 0, "tiny"),
        fmax=np.broadcast_to(fmax, (3,)).astype(float),
        slack=0,
        branch_x=x,
        branch_from=f,
        branch_to=t,
    )


def test_ptdf_of_a_triangle_by_hand():
    ptdf = tiny_case().ptdf
    # injecting at bus 2 (withdrawn at the slack bus 0): 1/3 goes 2->1->0, 2/3 goes 2->0 directly;
    # the branches are 0->1, 1->2, 0->2, so all three flows are negative
    np.testing.assert_allclose(ptdf[:, 2], [-1 / 3, -1 / 3, -2 / 3])
    np.testing.assert_allclose(ptdf[:, 0], 0.0)


def test_economic_dispatch_by_hand():
    # min p0^2 + p1^2 + 2 p1, p0 + p1 = 10: 2 p0 = 2 p1 + 2 -> p0 = 5.5, p1 = 4.5, cost 30.25 + 20.25 + 9
    solution = WarmDCOPF(tiny_case()).solve(np.array([10.0]))
    np.testing.assert_allclose(solution.dispatch, [5.5, 4.5], atol=1e-6)
    assert solution.cost == pytest.approx(59.5, rel=1e-9)


def test_a_binding_line_limit_by_hand():
    # bus 0 is the slack: flow(0->2) = -(1/3) p1 + (2/3) * 10 = (p0 + 10) / 3 with p0 + p1 = 10.
    # Unconstrained p0 = 5.5 gives 5.1667; a limit of 4.5 forces p0 = 3.5, p1 = 6.5.
    case = tiny_case(fmax=np.array([100.0, 100.0, 4.5]))
    solution = WarmDCOPF(case).solve(np.array([10.0]))
    np.testing.assert_allclose(solution.dispatch, [3.5, 6.5], atol=1e-5)
    assert abs(case.flows(solution.dispatch, np.array([10.0]))[2]) == pytest.approx(4.5, abs=1e-5)


def _pandapower_cost(name: str, fmax: np.ndarray | None) -> float:
    """pandapower's own DC OPF (PIPS, the solver behind ``pp.rundcopp``) on its internal case arrays.

    ``pp.rundcopp`` itself fails while writing results with pandas 3 (read-only
    arrays), after the solve; the solver call below is the same one it makes.
    """
    from pandapower.pypower.opf import opf
    from pandapower.pypower.ppoption import ppoption

    ppci, _ = _ppci(load_net(name))
    if fmax is not None:
        ppci["branch"][:, 5] = fmax
    result = opf(ppci, ppoption(VERBOSE=0, PF_DC=True, OPF_FLOW_LIM=2))
    assert result["success"]
    return float(result["f"])


@pytest.mark.parametrize("name", ["case30", "case118"])
def test_agrees_with_pandapower_dc_opf(name):
    for limits in ("case", "base"):
        case = load_case(name, line_limits=limits)
        ours = WarmDCOPF(case).solve(case.base_load).cost
        theirs = _pandapower_cost(name, None if limits == "case" else case.fmax)
        assert ours == pytest.approx(theirs, rel=1e-6)


def test_base_line_limits_follow_the_documented_rule():
    case = load_case("case30")
    unlimited = load_case("case30", line_limits="case")
    base = WarmDCOPF(unlimited).solve(case.base_load)
    flow = np.abs(case.flows(base.dispatch, case.base_load))
    np.testing.assert_allclose(case.fmax, np.maximum(1.1 * flow, 0.1 * flow.max()))


def test_warm_solves_equal_fresh_solves():
    case = load_case("case30")
    rng = np.random.default_rng(0)
    loads = case.base_load * rng.uniform(0.7, 1.0, size=(6, case.n_load))
    warm = WarmDCOPF(case)
    for pd in loads:
        try:
            fresh = WarmDCOPF(case).solve(pd).cost
        except InfeasibleError:
            with pytest.raises(InfeasibleError):
                warm.solve(pd)
            continue
        assert warm.solve(pd).cost == pytest.approx(fresh, rel=1e-7)


def test_unknown_case_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown case 'case9999'"):
        load_case("case9999")


@pytest.mark.parametrize(
    "loads, error, message",
    [
        ([[np.nan]], DataError, "finite"),
        ([[-1.0]], DataError, ">= 0 MW"),
        ([[1.0, 2.0, 3.0]], DataError, "expected \\[scenarios, 1\\]"),
        ([[1000.0]], InfeasibleError, "outside the generation range"),
    ],
)
def test_bad_loads(loads, error, message):
    with pytest.raises(error, match=message):
        tiny_case().check_loads(np.array(loads))


def test_islanding_outage_is_reported():
    case = load_case("case30", line_limits="case")
    degree = np.bincount(np.concatenate([case.branch_from, case.branch_to]), minlength=case.n_bus)
    radial = next(
        k for k in range(len(case.branch_from)) if degree[case.branch_from[k]] == 1 or degree[case.branch_to[k]] == 1
    )
    with pytest.raises(InfeasibleError, match="islanded"):
        case.without_branch(radial)
    with pytest.raises(ConfigError, match="does not exist"):
        case.without_branch(10_000)


def test_infeasible_line_limits_are_reported():
    case = tiny_case(fmax=np.array([0.1, 0.1, 0.1]))
    with pytest.raises(InfeasibleError, match="no feasible dispatch"):
        WarmDCOPF(case).solve(np.array([10.0]))
