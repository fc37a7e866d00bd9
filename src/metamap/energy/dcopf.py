"""DC optimal power flow (economic dispatch with line limits) on pandapower cases.

The problem for one load scenario ``pd [n_load]`` (MW)::

    minimize    sum_g c2_g pg_g^2 + c1_g pg_g + c0_g            (EUR/h)
    subject to  sum_g pg_g = sum_l pd_l                          (one balance equation)
                pmin_g <= pg_g <= pmax_g
                |PTDF (A_g pg - A_l pd)| <= fmax                 (line flows, MW)

``A_g [n_bus, n_gen]`` and ``A_l [n_bus, n_load]`` place generators and loads
on buses; ``PTDF [n_branch, n_bus]`` maps bus injections to branch flows with
the slack bus absorbing the imbalance (lossless DC approximation, shunts
ignored). The network data come from pandapower's own conversion of the case
to its internal PYPOWER arrays (``_pd2ppc``), so branches, transformers and
the external grid are treated exactly as pandapower treats them; the PTDF is
built from the branch reactances by ``pandapower.pypower.makePTDF``.

Costs are pandapower's quadratic ``poly_cost`` curves, kept exact: the
problem is a convex QP (solved by HiGHS's QP solver, :mod:`metamap.energy.highs`).

Line limits. The IEEE cases ship ratings of 9900 MVA (case57, case118) that
never bind. As in the learning-to-OPF literature, such ratings are replaced by
limits derived from the base case: ``fmax_l = max(alpha * |f_l|, floor * max_k |f_k|)``
with ``f`` the branch flows of the base-case economic dispatch without line
limits, ``alpha = 1.1`` and ``floor = 0.1`` by default (``line_limits="base"``).
``line_limits="case"`` keeps the case's own ratings (``rateA``; 0 = unlimited).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from metamap.errors import ConfigError, DataError

CASES = ("case30", "case57", "case118")

# PYPOWER column indices (pandapower.pypower.idx_bus / idx_gen / idx_brch).
_BUS_TYPE, _REF = 1, 3
_GEN_BUS, _PMAX, _PMIN, _GEN_STATUS = 0, 8, 9, 7
_F_BUS, _T_BUS, _BR_X, _RATE_A, _BR_STATUS = 0, 1, 3, 5, 10


class InfeasibleError(DataError):
    """The instance has no feasible solution (demand above capacity, islanded load, binding limits)."""


@dataclass(frozen=True)
class DCOPFCase:
    """A DC-OPF network in arrays (MW, EUR/h).

    Attributes:
        name: case name (``"case118"``), with ``"-out<k>"`` when branch k is out.
        gen_bus: ``[n_gen]`` bus index of each generator (external grid included).
        pmin, pmax: ``[n_gen]`` generator limits, MW.
        c0, c1, c2: ``[n_gen]`` cost coefficients: EUR/h, EUR/MWh, EUR/MW^2h.
        load_bus: ``[n_load]`` bus index of each load.
        base_load: ``[n_load]`` the case's own loads, MW.
        ptdf: ``[n_branch, n_bus]`` power transfer distribution factors.
        fmax: ``[n_branch]`` branch limits, MW (``inf`` = unlimited).
        slack: index of the slack (reference) bus.
    """

    name: str
    gen_bus: np.ndarray
    pmin: np.ndarray
    pmax: np.ndarray
    c0: np.ndarray
    c1: np.ndarray
    c2: np.ndarray
    load_bus: np.ndarray
    base_load: np.ndarray
    ptdf: np.ndarray
    fmax: np.ndarray
    slack: int
    branch_x: np.ndarray
    branch_from: np.ndarray
    branch_to: np.ndarray

    @property
    def n_gen(self) -> int:
        return int(self.gen_bus.shape[0])

    @property
    def n_load(self) -> int:
        return int(self.load_bus.shape[0])

    @property
    def n_bus(self) -> int:
        return int(self.ptdf.shape[1])

    @property
    def ptdf_gen(self) -> np.ndarray:
        """``[n_branch, n_gen]``: flow per MW injected by each generator."""
        return self.ptdf[:, self.gen_bus]

    @property
    def ptdf_load(self) -> np.ndarray:
        """``[n_branch, n_load]``: flow per MW drawn by each load (sign: drawn = negative injection)."""
        return self.ptdf[:, self.load_bus]

    def cost(self, pg: np.ndarray) -> np.ndarray:
        """Generation cost ``[...]`` EUR/h of dispatches ``pg [..., n_gen]`` MW."""
        return (self.c2 * pg**2 + self.c1 * pg + self.c0).sum(-1)

    def flows(self, pg: np.ndarray, pd: np.ndarray) -> np.ndarray:
        """Branch flows ``[..., n_branch]`` MW for ``pg [..., n_gen]`` and ``pd [..., n_load]``."""
        return pg @ self.ptdf_gen.T - pd @ self.ptdf_load.T

    def check_loads(self, pd: np.ndarray, what: str = "loads", allow_infeasible: bool = False) -> np.ndarray:
        """Validate scenarios ``pd [n_load]`` or ``[N, n_load]`` (MW); returns float64 ``[N, n_load]``.

        Raises DataError for a wrong width, NaN/inf or negative loads, and
        (unless ``allow_infeasible``, where the callers report such scenarios
        one by one) InfeasibleError for a scenario whose total load is
        outside the total generator range.
        """
        pd = np.asarray(pd, dtype=np.float64)
        pd = pd[None] if pd.ndim == 1 else pd
        if pd.ndim != 2 or pd.shape[1] != self.n_load:
            raise DataError(
                f"{what}: expected [scenarios, {self.n_load}] loads in MW for {self.name}, got shape {pd.shape}"
            )
        if not np.isfinite(pd).all():
            bad = np.argwhere(~np.isfinite(pd))[0]
            raise DataError(f"{what}: loads must be finite; scenario {bad[0]}, load {bad[1]} is {pd[tuple(bad)]}")
        if (pd < 0).any():
            bad = np.argwhere(pd < 0)[0]
            raise DataError(f"{what}: loads must be >= 0 MW; scenario {bad[0]}, load {bad[1]} is {pd[tuple(bad)]:.4g}")
        if allow_infeasible:
            return pd
        total = pd.sum(1)
        over = np.flatnonzero((total > self.pmax.sum() + 1e-6) | (total < self.pmin.sum() - 1e-6))
        if over.size:
            k = int(over[0])
            raise InfeasibleError(
                f"{what}: scenario {k} has total load {total[k]:.1f} MW outside the generation range "
                f"[{self.pmin.sum():.1f}, {self.pmax.sum():.1f}] MW of {self.name} ({over.size} such scenarios)"
            )
        return pd

    def without_branch(self, branch: int) -> DCOPFCase:
        """The same case with ``branch`` out of service; InfeasibleError if that islands a bus."""
        if not 0 <= branch < self.ptdf.shape[0]:
            raise ConfigError(f"{self.name}: branch {branch} does not exist; expected 0..{self.ptdf.shape[0] - 1}")
        keep = np.ones(self.ptdf.shape[0], dtype=bool)
        keep[branch] = False
        ptdf = _ptdf(
            self.n_bus,
            self.branch_from[keep],
            self.branch_to[keep],
            self.branch_x[keep],
            self.slack,
            f"{self.name} without branch {branch}",
        )
        return replace(
            self,
            name=f"{self.name}-out{branch}",
            ptdf=ptdf,
            fmax=self.fmax[keep],
            branch_x=self.branch_x[keep],
            branch_from=self.branch_from[keep],
            branch_to=self.branch_to[keep],
        )


def _ptdf(n_bus: int, f: np.ndarray, t: np.ndarray, x: np.ndarray, slack: int, what: str) -> np.ndarray:
    """PTDF ``[n_branch, n_bus]`` from branch ends and reactances (p.u.), slack column zero."""
    graph = coo_matrix((np.ones(f.size), (f, t)), shape=(n_bus, n_bus))
    n_parts, labels = connected_components(graph, directed=False)
    if n_parts > 1:
        islanded = np.flatnonzero(labels != labels[slack])
        raise InfeasibleError(f"{what}: buses {islanded.tolist()[:10]} are islanded from the slack bus")
    b = 1.0 / x
    incidence = np.zeros((f.size, n_bus))
    incidence[np.arange(f.size), f] = 1.0
    incidence[np.arange(f.size), t] = -1.0
    bf = incidence * b[:, None]  # branch flow per bus angle
    bbus = incidence.T @ bf
    keep = np.arange(n_bus) != slack
    ptdf = np.zeros((f.size, n_bus))
    ptdf[:, keep] = np.linalg.solve(bbus[np.ix_(keep, keep)], bf[:, keep].T).T
    return ptdf


def _clean(values: np.ndarray) -> np.ndarray:
    return np.where(np.abs(values) < 1e-6, 0.0, values)


def _ppci(net):
    """pandapower's internal PYPOWER arrays for a DC OPF of ``net`` (and its bus lookup)."""
    from pandapower.auxiliary import _add_auxiliary_elements, _init_runopp_options
    from pandapower.pd2ppc import _pd2ppc

    _init_runopp_options(
        net,
        calculate_voltage_angles=True,
        check_connectivity=True,
        switch_rx_ratio=2,
        delta=1e-10,
        init="flat",
        numba=False,
        trafo3w_losses="hv",
        consider_line_temperature=False,
    )
    net._options["ac"] = False
    _add_auxiliary_elements(net)
    _, ppci = _pd2ppc(net)
    return ppci, net._pd2ppc_lookups["bus"]


def load_net(name: str):
    """The pandapower network ``name`` (one of :data:`CASES`); ConfigError for others."""
    if name not in CASES:
        raise ConfigError(f"unknown case {name!r}; expected one of {', '.join(CASES)}")
    import pandapower.networks as pn

    return getattr(pn, name)()


def load_case(name: str, line_limits: str = "base", alpha: float = 1.1, floor: float = 0.1) -> DCOPFCase:
    """Build the DC-OPF arrays of pandapower case ``name``; see the module doc for ``line_limits``."""
    if line_limits not in ("base", "case"):
        raise ConfigError(f"line_limits must be 'base' or 'case', got {line_limits!r}")
    if alpha <= 0 or floor < 0:
        raise ConfigError(f"expected alpha > 0 and floor >= 0, got alpha={alpha}, floor={floor}")
    net = load_net(name)
    ppci, lookup = _ppci(net)
    gen, branch, gencost = ppci["gen"], ppci["branch"], ppci["gencost"]
    on = gen[:, _GEN_STATUS] > 0
    if not (gencost[:, 0] == 2).all() or not (gencost[:, 3] == 3).all():
        raise ConfigError(f"{name}: expected quadratic polynomial costs for every generator")
    live = branch[:, _BR_STATUS] > 0
    branch = branch[live]
    n_bus = ppci["bus"].shape[0]
    slack = int(np.flatnonzero(ppci["bus"][:, _BUS_TYPE] == _REF)[0])
    f, t = branch[:, _F_BUS].real.astype(int), branch[:, _T_BUS].real.astype(int)
    x = branch[:, _BR_X].real
    loads = net.load[net.load.in_service]
    rate = branch[:, _RATE_A].real
    case = DCOPFCase(
        name=name,
        gen_bus=gen[on, _GEN_BUS].real.astype(int),
        # pandapower widens zero limits by 1e-10 (its ``delta``); take them back to 0.
        pmin=_clean(gen[on, _PMIN].real),
        pmax=_clean(gen[on, _PMAX].real),
        c2=gencost[on, 4].copy(),
        c1=gencost[on, 5].copy(),
        c0=gencost[on, 6].copy(),
        load_bus=lookup[loads.bus.to_numpy()].astype(int),
        base_load=(loads.p_mw * loads.scaling).to_numpy(dtype=np.float64),
        ptdf=_ptdf(n_bus, f, t, x, slack, name),
        fmax=np.where(rate > 0, rate, np.inf),
        slack=slack,
        branch_x=x,
        branch_from=f,
        branch_to=t,
    )
    if line_limits == "case":
        return case
    from metamap.energy.highs import WarmDCOPF

    unlimited = replace(case, fmax=np.full_like(case.fmax, np.inf))
    base = WarmDCOPF(unlimited).solve(case.base_load)
    flow = np.abs(unlimited.flows(base.dispatch, case.base_load))
    return replace(case, fmax=np.maximum(alpha * flow, floor * flow.max()))
