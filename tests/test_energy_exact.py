"""Flows of solved, loaded scenarios against pandapower's own DC power-flow model (``makeBdc``).

pandapower's ``rundcopp`` fails under pandas 3 ("assignment destination is
read-only"), so the reference is pandapower's bus / branch susceptance
matrices: the angles solving ``Bbus theta = P - Pbusinj`` (slack angle 0)
give the flows ``Bf theta + Pfinj``; none of the PTDF is reused.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse.linalg import spsolve

from metamap.energy.dcopf import InfeasibleError, load_case
from metamap.energy.highs import WarmDCOPF


def pandapower_flows(case, pg: np.ndarray, pd: np.ndarray) -> np.ndarray:
    """Branch flows ``[n_branch]`` MW of dispatch ``pg [n_gen]`` and loads ``pd [n_load]`` by pandapower's B matrices."""
    from pandapower.pypower.makeBdc import makeBdc

    bbus, bf, pbusinj, pfinj, _ = makeBdc(case.bus, case.branch)
    inject = np.bincount(case.gen_bus, pg, case.n_bus) - np.bincount(case.load_bus, pd, case.n_bus) + case.fixed
    rhs = inject / case.base_mva - np.asarray(pbusinj).real
    keep = np.setdiff1d(np.arange(case.n_bus), [case.slack])
    theta = np.zeros(case.n_bus)
    theta[keep] = spsolve(bbus.tocsc()[keep][:, keep], rhs[keep])
    return (bf @ theta + np.asarray(pfinj).real) * case.base_mva


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
        flows = pandapower_flows(case, pg, pd)
        np.testing.assert_allclose(case.flows(pg, pd), flows, atol=1e-6, rtol=0)
        assert (np.abs(flows) <= case.fmax + 1e-6).all()
        assert pg.sum() == pytest.approx(float(case.demand(pd)), abs=1e-6)
        binding += int((np.abs(flows) >= case.fmax - 1e-6).any())
    assert binding > 0, "no scenario had a binding line limit: the test would check nothing"
