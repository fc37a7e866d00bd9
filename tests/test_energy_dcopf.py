"""DC-OPF: hand-solved instances, PTDF by hand, agreement with pandapower's own DC OPF, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from energy_cases import tiny_case
from metamap.energy.dcopf import (
    InfeasibleError,
    case_from_net,
    case_names,
    load_case,
    load_net,
)
from metamap.energy.highs import WarmDCOPF
from metamap.errors import ConfigError, DataError


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


def test_base_line_limits_follow_the_documented_rule():
    case = load_case("case30", line_limits="base")
    unlimited = load_case("case30", line_limits="case")
    base = WarmDCOPF(unlimited).solve(case.base_load)
    flow = np.abs(case.flows(base.dispatch, case.base_load))
    np.testing.assert_allclose(case.fmax, np.maximum(1.1 * flow, 0.1 * flow.max()))


def test_warm_solves_equal_fresh_solves():
    case = load_case("case30", line_limits="base")
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
    with pytest.raises(ConfigError, match="unknown case 'case9999'.*case2869pegase"):
        load_case("case9999")
    with pytest.raises(ConfigError, match="line_limits"):
        load_case("case14", line_limits="derived")


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


def test_linear_costs_are_an_lp_solved_exactly():
    # min 1 p0 + 2 p1, p0 + p1 = 10, flow(0->2) = (p0 + 10) / 3 <= 5: p0 = 5, p1 = 5, cost 15
    case = tiny_case(fmax=np.array([100.0, 100.0, 5.0]), c1=(1.0, 2.0), c2=(0.0, 0.0))
    exact = WarmDCOPF(case)
    assert exact.is_lp
    solution = exact.solve(np.array([10.0]))
    np.testing.assert_allclose(solution.dispatch, [5.0, 5.0], atol=1e-7)
    assert solution.cost == pytest.approx(15.0, rel=1e-9)


def test_any_pandapower_case_by_name():
    names = case_names()
    assert {"case14", "case39", "case300", "case_illinois200", "case89pegase", "case2869pegase"} <= set(names)
    case = load_case("case89pegase")  # linear costs, sgen, shunts
    assert (case.c2 == 0).all() and (case.c1 > 0).any()
    net = load_net("case89pegase")
    sgen = net.sgen.p_mw[net.sgen.in_service].sum()
    shunt_mw = (net.shunt.p_mw * net.shunt.step)[net.shunt.in_service].sum()
    assert case.fixed.sum() == pytest.approx(sgen - shunt_mw, rel=1e-9)


def test_a_case_with_fixed_generation_counts_it_in_the_balance():
    case = load_case("case300")
    assert case.fixed.sum() > 300  # 321.8 MW of sgen less 1.3 MW of shunts
    solution = WarmDCOPF(case).solve(case.base_load)
    assert solution.dispatch.sum() == pytest.approx(case.base_load.sum() - case.fixed.sum(), abs=1e-5)


def test_pandapower_json_round_trip(tmp_path):
    import pandapower as pp

    pp.to_json(load_net("case14"), str(tmp_path / "grid.json"))
    ours, theirs = load_case(str(tmp_path / "grid.json")), load_case("case14")
    assert ours.name == "grid"
    np.testing.assert_array_equal(ours.ptdf, theirs.ptdf)
    np.testing.assert_array_equal(ours.base_load, theirs.base_load)
    np.testing.assert_array_equal(ours.c1, theirs.c1)


@pytest.mark.parametrize(
    "payload, message",
    [
        # pandapower's own reader imports os and calls os.system with this argument
        ({"_module": "os", "_class": "system", "_object": "touch {marker}"}, "refusing the embedded object os.system"),
        ({"_module": "builtins", "_class": "eval", "_object": "open('{marker}', 'w')"}, "builtins.eval"),
        # a table pandapower would read from an absolute .json path
        ({"_module": "pandas.core.frame", "_class": "DataFrame", "_object": "{marker}.json"}, "does not hold JSON"),
        (
            {"_module": "pandas.core.frame", "_class": "DataFrame", "_object": "{}", "storage_options": {}},
            "unexpected layout",
        ),
    ],
)
def test_a_malicious_pandapower_json_is_refused(tmp_path, payload, message):
    import pandapower as pp

    marker = tmp_path / "ran"
    pp.to_json(load_net("case14"), str(tmp_path / "grid.json"))
    tree = json.loads((tmp_path / "grid.json").read_text())
    evil = json.loads(json.dumps(payload).replace("{marker}", str(marker)))
    tree["_object"]["user_pf_options"] = evil
    (tmp_path / "evil.json").write_text(json.dumps(tree))
    with pytest.raises(DataError, match=message):
        load_case(str(tmp_path / "evil.json"))
    assert not marker.exists()


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("grid.m", "function mpc = grid\nmpc.baseMVA = 100;\n", "MATPOWER .m files are not read"),
        ("grid.json", "not json", "not readable JSON"),
        ("grid.json", "[1, 2]", "expected a pandapower network"),
        ("grid.mat", "not a mat file", "not a readable MATPOWER .mat case"),
    ],
)
def test_bad_network_files(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(DataError, match=message):
        load_case(str(tmp_path / name))
    with pytest.raises(DataError, match="does not exist"):
        load_case(str(tmp_path / "missing.json"))


def test_piecewise_linear_costs_are_refused_in_one_line():
    import pandapower as pp

    net = load_net("case14")
    net.poly_cost = net.poly_cost.iloc[1:]
    pp.create_pwl_cost(net, 0, "ext_grid", [[0, 100, 10], [100, 400, 20]])
    with pytest.raises(ConfigError, match="piecewise-linear costs"):
        case_from_net(net, "pwl14")
