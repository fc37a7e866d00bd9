"""Flows of solved, loaded scenarios against pandapower's own DC power-flow model (``makeBdc``).

pandapower's ``rundcopp`` fails under pandas 3 ("assignment destination is
read-only"), so the reference is pandapower's bus / branch susceptance
matrices: the angles solving ``Bbus theta = P - Pbusinj`` (slack angle 0)
give the flows ``Bf theta + Pfinj`` (:func:`metamap.energy.dcopf.bdc_flows`); none of the PTDF is reused.
"""

from __future__ import annotations

import numpy as np
import pytest

from metamap.energy.dcopf import InfeasibleError, bdc_flows, load_case
from metamap.energy.highs import WarmDCOPF


@pytest.mark.parametrize(
    "name, limits, scale",
    [
        ("case14", "base", 1.1),
        ("case39", "base", 1.1),
        ("case57", "base", 1.1),
        ("case118", "base", 1.1),
        ("case_illinois200", "base", 1.1),
    ],
)
def test_loaded_dispatch_flows_match_pandapower_and_respect_limits(name, limits, scale):
    case = load_case(name, line_limits=limits)
    rng = np.random.default_rng(0)
    loads = case.base_load * rng.uniform(0.8, scale, size=(8, case.n_load))
    solver, binding = WarmDCOPF(case), 0
    for pd in loads:
        try:
            pg = solver.solve(pd).dispatch
        except InfeasibleError:
            continue
        flows = bdc_flows(case, pg, pd)[0]
        np.testing.assert_allclose(case.flows(pg, pd), flows, atol=1e-6, rtol=0)
        assert (np.abs(flows) <= case.fmax + 1e-6).all()
        assert pg.sum() == pytest.approx(float(case.demand(pd)), abs=1e-6)
        binding += int((np.abs(flows) >= case.fmax - 1e-6).any())
    assert binding > 0, "no scenario had a binding line limit: the test would check nothing"


@pytest.mark.parametrize("name", ["case14", "case118"])
def test_linear_cost_optimum_matches_an_angle_formulation_on_pandapowers_model(name):
    """Optimal cost vs scipy's HiGHS on the angle form (variables pg and theta, ``Bbus theta = P``)."""
    from dataclasses import replace

    from pandapower.pypower.makeBdc import makeBdc
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix, hstack, vstack

    case = load_case(name, line_limits="base")
    case = replace(case, c1=case.c1 + case.c2 * case.pmax, c2=np.zeros(case.n_gen))  # a linear cost
    pd = case.base_load * 1.05
    got = WarmDCOPF(case).solve(pd)
    bbus, bf, pbusinj, pfinj, _ = makeBdc(case.bus, case.branch)
    gens = csr_matrix((np.ones(case.n_gen), (case.gen_bus, np.arange(case.n_gen))), shape=(case.n_bus, case.n_gen))
    fixed = (np.bincount(case.load_bus, pd, case.n_bus) - case.fixed) / case.base_mva + np.asarray(pbusinj).real
    slack = csr_matrix(([1.0], ([0], [case.slack])), shape=(1, case.n_bus))
    a_eq = vstack([hstack([gens / case.base_mva, -bbus]), hstack([csr_matrix((1, case.n_gen)), slack])])
    limited = np.isfinite(case.fmax)
    cap = case.fmax[limited] / case.base_mva
    shift = np.asarray(pfinj).real[limited]
    a_flow = hstack([csr_matrix((int(limited.sum()), case.n_gen)), bf.tocsr()[limited]])
    ref = linprog(
        np.concatenate([case.c1, np.zeros(case.n_bus)]),
        A_ub=vstack([a_flow, -a_flow]),
        b_ub=np.concatenate([cap - shift, cap + shift]),
        A_eq=a_eq,
        b_eq=np.concatenate([fixed, [0.0]]),
        bounds=list(zip(case.pmin, case.pmax)) + [(None, None)] * case.n_bus,
        method="highs",
    )
    assert ref.status == 0, ref.message
    assert got.cost == pytest.approx(ref.fun + case.c0.sum(), rel=1e-6)
    # an LP can have many optimal dispatches (equal costs): only the optimum cost is unique
    assert (np.abs(bdc_flows(case, got.dispatch, pd)[0]) <= case.fmax + 1e-6).all()
