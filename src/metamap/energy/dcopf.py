"""DC optimal power flow (economic dispatch with line limits) on pandapower networks.

The problem for one load scenario ``pd [n_load]`` (MW)::

    minimize    sum_g c2_g pg_g^2 + c1_g pg_g + c0_g            (EUR/h)
    subject to  sum_g pg_g = sum_l pd_l - sum_b fixed_b          (one balance equation)
                pmin_g <= pg_g <= pmax_g
                |PTDF (A_g pg - A_l pd + fixed) + offset| <= fmax   (branch flows, MW)

``A_g [n_bus, n_gen]`` and ``A_l [n_bus, n_load]`` place generators and the
scenario's loads on buses. Everything else the case holds enters as a fixed
injection ``fixed [n_bus]`` MW: static generators (``sgen``), storage and
other non-dispatchable elements at their set points, shunt conductances
(their MW at 1 p.u.) as demand. ``PTDF [n_branch, n_bus]`` maps bus
injections to branch flows with the slack bus absorbing the imbalance, and
``offset [n_branch]`` holds the flows that phase-shifting transformers drive.

The model is pandapower's DC model, not a copy of it: the arrays come from
pandapower's own conversion of the network to its internal PYPOWER case
(``_pd2ppc``, the step behind ``rundcpp`` / ``rundcopp``), the PTDF from
``pandapower.pypower.makePTDF`` and the phase-shift injections from
``makeBdc`` on those arrays, so transformer tap ratios, phase shifters, the
external grid and out-of-service elements are treated exactly as pandapower
treats them (the tests compare flows with pandapower's DC power flow to
1e-9 p.u.).

Networks: any network builder of ``pandapower.networks`` by name (``case14``,
``case_illinois200``, ``case2869pegase``, ...), a pandapower JSON file (read
by a restricted reader: see :func:`read_pandapower_json`) or a MATPOWER
``.mat`` file (pandapower's converter, ``scipy.io.loadmat``). MATPOWER ``.m``
files are refused: pandapower reads them through the optional package
``matpowercaseframes``, which is not part of metamap's dependencies.

Costs: pandapower's polynomial costs of degree <= 2 (quadratic, linear or
constant ``poly_cost`` curves), kept exact: the problem is a convex QP, or an
LP when every cost is linear (solved by HiGHS, :mod:`metamap.energy.highs`).
Piecewise-linear costs (``pwl_cost``) are refused with a ConfigError.

Line limits (``line_limits``). ``"case"`` (the default) keeps the case's own
ratings (``rateA`` of pandapower's case, MVA read as MW; 0 = unlimited).
``"base"`` derives limits from the base case, as in the learning-to-OPF
literature, for cases whose ratings never bind (case57 and case118 ship 9900
MVA): ``fmax_l = max(alpha * |f_l|, floor * max_k |f_k|)`` with ``f`` the
branch flows of the base-case economic dispatch without line limits,
``alpha = 1.1`` and ``floor = 0.1`` by default.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from metamap.errors import ConfigError, DataError, one_line

LINE_LIMITS = ("case", "base")
NETWORK_SUFFIXES = (".json", ".mat", ".m")

# PYPOWER column indices (pandapower.pypower.idx_bus / idx_gen / idx_brch / idx_cost).
_BUS_TYPE, _PD, _GS, _REF = 1, 2, 4, 3
_GEN_BUS, _PG, _PMAX, _PMIN, _GEN_STATUS = 0, 1, 8, 9, 7
_F_BUS, _T_BUS, _BR_X, _RATE_A, _TAP, _SHIFT, _BR_STATUS = 0, 1, 3, 5, 8, 9, 10
_MODEL, _NCOST, _COST = 0, 3, 4
_POLYNOMIAL = 2


class InfeasibleError(DataError):
    """The solver proved that the instance has no feasible solution (demand above capacity, binding limits)."""


class UnboundedError(DataError):
    """The solver proved that the cost has no lower bound (a unit without limits at a negative price)."""


class SolverError(DataError):
    """The solver gave no answer (time limit, numerical trouble) even after retries: nothing is proved."""


@dataclass(frozen=True)
class DCOPFCase:
    """A DC-OPF network in arrays (MW, EUR/h).

    Attributes:
        name: case name (``"case118"``, a file's stem), with ``"-out<k>"`` when branch k is out.
        gen_bus: ``[n_gen]`` bus index of each dispatchable unit (external grid included).
        pmin, pmax: ``[n_gen]`` generator limits, MW.
        c0, c1, c2: ``[n_gen]`` cost coefficients: EUR/h, EUR/MWh, EUR/MW^2h.
        load_bus: ``[n_load]`` bus index of each scenario load.
        base_load: ``[n_load]`` the case's own loads, MW.
        fixed: ``[n_bus]`` fixed net injection per bus, MW (sgen, storage, minus shunt MW).
        ptdf: ``[n_branch, n_bus]`` power transfer distribution factors (pandapower's ``makePTDF``).
        offset: ``[n_branch]`` branch flows with no injection at all (phase shifters), MW.
        fmax: ``[n_branch]`` branch limits, MW (``inf`` = unlimited).
        slack: index of the slack (reference) bus.
        base_mva: the case's power base, MVA (1 p.u. of flow = ``base_mva`` MW).
        bus: ``[n_bus, >= 2]`` PYPOWER bus rows (number, type) the PTDF is built from.
        branch: ``[n_branch, >= 11]`` PYPOWER branch rows (ends, reactance, tap, shift, ...) of the live branches.
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
    fixed: np.ndarray
    ptdf: np.ndarray
    offset: np.ndarray
    fmax: np.ndarray
    slack: int
    base_mva: float
    bus: np.ndarray
    branch: np.ndarray

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
    def n_branch(self) -> int:
        return int(self.ptdf.shape[0])

    @property
    def branch_from(self) -> np.ndarray:
        """``[n_branch]`` from-bus index of each branch."""
        return self.branch[:, _F_BUS].astype(int)

    @property
    def branch_to(self) -> np.ndarray:
        """``[n_branch]`` to-bus index of each branch."""
        return self.branch[:, _T_BUS].astype(int)

    @property
    def ptdf_gen(self) -> np.ndarray:
        """``[n_branch, n_gen]``: flow per MW injected by each generator."""
        return self.ptdf[:, self.gen_bus]

    @property
    def ptdf_load(self) -> np.ndarray:
        """``[n_branch, n_load]``: flow per MW drawn by each load (sign: drawn = negative injection)."""
        return self.ptdf[:, self.load_bus]

    @property
    def fixed_flow(self) -> np.ndarray:
        """``[n_branch]`` MW: the flows of the fixed injections and the phase shifters alone."""
        return self.ptdf @ self.fixed + self.offset

    def demand(self, pd: np.ndarray) -> np.ndarray:
        """Power ``[...]`` MW the generators must supply for loads ``pd [..., n_load]``: loads minus fixed injection."""
        return np.asarray(pd).sum(-1) - float(self.fixed.sum())

    def cost(self, pg: np.ndarray) -> np.ndarray:
        """Generation cost ``[...]`` EUR/h of dispatches ``pg [..., n_gen]`` MW."""
        return (self.c2 * pg**2 + self.c1 * pg + self.c0).sum(-1)

    def flows(self, pg: np.ndarray, pd: np.ndarray) -> np.ndarray:
        """Branch flows ``[..., n_branch]`` MW (from end) for ``pg [..., n_gen]`` and ``pd [..., n_load]``."""
        return pg @ self.ptdf_gen.T - pd @ self.ptdf_load.T + self.fixed_flow

    def check_loads(self, pd: np.ndarray, what: str = "loads", allow_infeasible: bool = False) -> np.ndarray:
        """Validate scenarios ``pd [n_load]`` or ``[N, n_load]`` (MW); returns float64 ``[N, n_load]``.

        Raises DataError for a wrong width, NaN/inf or negative loads, and
        (unless ``allow_infeasible``, where the callers report such scenarios
        one by one) InfeasibleError for a scenario whose demand (loads minus
        fixed injection) is outside the total generator range.
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
        total = self.demand(pd)
        over = np.flatnonzero((total > self.pmax.sum() + 1e-6) | (total < self.pmin.sum() - 1e-6))
        if over.size:
            k = int(over[0])
            raise InfeasibleError(
                f"{what}: scenario {k} needs {total[k]:.1f} MW of generation, outside the generation range "
                f"[{self.pmin.sum():.1f}, {self.pmax.sum():.1f}] MW of {self.name} ({over.size} such scenarios)"
            )
        return pd

    def without_branch(self, branch: int) -> DCOPFCase:
        """The same case with ``branch`` out of service; InfeasibleError if that islands a bus."""
        if not 0 <= branch < self.n_branch:
            raise ConfigError(f"{self.name}: branch {branch} does not exist; expected 0..{self.n_branch - 1}")
        keep = np.ones(self.n_branch, dtype=bool)
        keep[branch] = False
        ptdf, offset = dc_network(
            self.base_mva, self.bus, self.branch[keep], self.slack, f"{self.name} without branch {branch}"
        )
        return replace(
            self,
            name=f"{self.name}-out{branch}",
            ptdf=ptdf,
            offset=offset,
            fmax=self.fmax[keep],
            branch=self.branch[keep],
        )


def dc_network(base_mva: float, bus: np.ndarray, branch: np.ndarray, slack: int, what: str):
    """pandapower's DC network of PYPOWER ``bus`` / ``branch`` rows: ``PTDF [n_branch, n_bus]`` and the
    phase-shift flows ``offset [n_branch]`` MW (``Pfinj - PTDF Pbusinj`` of ``makeBdc``, times ``base_mva``).

    InfeasibleError when a bus is islanded from the slack bus.
    """
    from pandapower.pypower.makeBdc import makeBdc
    from pandapower.pypower.makePTDF import makePTDF

    n_bus = bus.shape[0]
    f, t = branch[:, _F_BUS].astype(int), branch[:, _T_BUS].astype(int)
    graph = coo_matrix((np.ones(f.size), (f, t)), shape=(n_bus, n_bus))
    _, labels = connected_components(graph, directed=False)
    islanded = np.flatnonzero(labels != labels[slack])
    if islanded.size:
        raise InfeasibleError(f"{what}: buses {islanded.tolist()[:10]} are islanded from the slack bus")
    ptdf = np.asarray(makePTDF(base_mva, bus, branch, slack), dtype=np.float64)
    _, _, pbusinj, pfinj, _ = makeBdc(bus, branch)
    offset = (np.asarray(pfinj).real - ptdf @ np.asarray(pbusinj).real) * base_mva
    return ptdf, offset


def bdc_flows(case: DCOPFCase, pg: np.ndarray, pd: np.ndarray) -> np.ndarray:
    """Branch flows ``[N, n_branch]`` MW of ``pg [N, n_gen]`` and ``pd [N, n_load]`` by pandapower's DC model
    solved directly: bus angles from ``Bbus theta = P - Pbusinj`` (slack angle 0), flows ``Bf theta + Pfinj``
    (``makeBdc``). No PTDF is used: it checks :meth:`DCOPFCase.flows` independently. Any imbalance of the
    injections lands on the slack bus, as in pandapower's ``rundcpp``.
    """
    from pandapower.pypower.makeBdc import makeBdc
    from scipy.sparse.linalg import splu

    pg, pd = np.atleast_2d(pg), np.atleast_2d(pd)
    bbus, bf, pbusinj, pfinj, _ = makeBdc(case.bus, case.branch)
    inject = pg @ _incidence(case.gen_bus, case.n_bus) - pd @ _incidence(case.load_bus, case.n_bus) + case.fixed
    rhs = inject / case.base_mva - np.asarray(pbusinj).real
    keep = np.setdiff1d(np.arange(case.n_bus), [case.slack])
    theta = np.zeros_like(rhs)
    theta[:, keep] = splu(bbus.tocsc()[keep][:, keep].tocsc()).solve(np.ascontiguousarray(rhs[:, keep].T)).T
    return ((bf @ theta.T).T + np.asarray(pfinj).real) * case.base_mva


def _incidence(bus_of: np.ndarray, n_bus: int) -> np.ndarray:
    """``[n_element, n_bus]`` 0/1: which bus each element sits on."""
    out = np.zeros((bus_of.shape[0], n_bus))
    out[np.arange(bus_of.shape[0]), bus_of] = 1.0
    return out


def _clean(values: np.ndarray) -> np.ndarray:
    return np.where(np.abs(values) < 1e-6, 0.0, values)


def _ppci(net):
    """pandapower's internal PYPOWER arrays for a DC OPF of ``net`` (and its bus lookup into them)."""
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


def case_names() -> list[str]:
    """The network builders of ``pandapower.networks`` that need no argument (``case14`` ... ``iceland``)."""
    import pandapower.networks as pn

    names = []
    for name in dir(pn):
        builder = getattr(pn, name)
        if name.startswith("_") or not inspect.isfunction(builder):
            continue
        params = inspect.signature(builder).parameters.values()
        if all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
            names.append(name)
    return sorted(names)


def is_network_file(spec: str) -> bool:
    """Whether ``--case`` names a file (by its suffix or because it exists) rather than a pandapower case."""
    return Path(spec).suffix.lower() in NETWORK_SUFFIXES or Path(spec).exists()


def load_net(spec: str):
    """The pandapower network ``spec``: a builder of ``pandapower.networks`` or a network file (module doc)."""
    if is_network_file(spec):
        return _read_network_file(Path(spec))
    names = case_names()
    if spec not in names:
        cases = ", ".join(n for n in names if n.startswith("case"))
        raise ConfigError(
            f"unknown case {spec!r}; expected a network of pandapower.networks ({cases}, ...) "
            f"or a file ({', '.join(NETWORK_SUFFIXES[:2])})"
        )
    import pandapower as pp
    import pandapower.networks as pn

    try:
        net = getattr(pn, spec)()
    except Exception as exc:  # noqa: BLE001 - a builder that runs a power flow can fail inside pandapower
        raise DataError(f"pandapower.networks.{spec}() failed ({one_line(exc)})") from None
    if not isinstance(net, pp.pandapowerNet):
        raise ConfigError(f"pandapower.networks.{spec} does not build a network")
    return net


def _read_network_file(path: Path):
    if not path.exists():
        raise DataError(f"network file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return read_pandapower_json(path)
    if suffix == ".mat":
        from pandapower.converter import from_mpc

        try:
            return from_mpc(str(path))
        except Exception as exc:  # noqa: BLE001 - scipy and the converter raise many types for a bad file
            raise DataError(f"network file {path} is not a readable MATPOWER .mat case ({one_line(exc)})") from None
    if suffix == ".m":
        raise DataError(
            f"network file {path}: MATPOWER .m files are not read (pandapower needs the optional package "
            "matpowercaseframes for them); save the case as .mat (MATLAB/Octave: save('case.mat', 'mpc')) "
            "or as pandapower JSON"
        )
    raise DataError(f"network file {path}: expected {' | '.join(NETWORK_SUFFIXES)}, got {suffix or 'no suffix'!r}")


# What a pandapower JSON file may hold: its own serialisation of a net and of pandas tables, nothing else.
# pandapower's reader imports any module a file names and calls any class or function in it with the file's
# arguments (``{"_module": "os", "_class": "system", "_object": "..."}`` runs a shell command), and reads
# a table from any absolute ``.json`` path a file gives; the check below refuses all of that before the
# text reaches pandapower.
_NET = ("pandapower.auxiliary", "pandapowerNet")
_SAFE_OBJECTS = {
    ("pandas.core.frame", "DataFrame"),
    ("pandas.core.series", "Series"),
    ("pandas", "DataFrame"),  # what pandapower writes under pandas 3
    ("pandas", "Series"),
}
_TABLE_KEYS = {
    "_module",
    "_class",
    "_object",
    "orient",
    "dtype",
    "is_multiindex",
    "is_multicolumn",
    "index_name",
    "index_names",
    "column_name",
    "column_names",
}


def read_pandapower_json(path: Path):
    """A pandapower network from its JSON file, refusing any embedded object but nets and tables.

    DataError (naming the object and where it sits) for a file that names
    another Python object, passes a table reader other options, or is not
    JSON. The accepted text is decoded by pandapower's own JSON decoder with
    a registry that knows only the net and pandas tables (pandapower's own
    ``from_json_string`` does not read the tables pandapower writes under
    pandas 3, which it labels ``pandas.DataFrame``).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        tree = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"network file {path} is not readable JSON ({one_line(exc)})") from None
    if not (isinstance(tree, dict) and (tree.get("_module"), tree.get("_class")) == _NET):
        raise DataError(f"network file {path}: expected a pandapower network (pandapower.to_json), found other JSON")
    _check_safe(tree, path, "$")
    import pandapower as pp
    from pandapower.io_utils import PPJSONDecoder

    try:
        net = json.loads(text, cls=PPJSONDecoder, registry_class=_table_registry())
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - pandas raises many types for malformed tables
        raise DataError(f"network file {path}: its tables cannot be read ({one_line(exc)})") from None
    if not isinstance(net, pp.pandapowerNet):
        raise DataError(f"network file {path}: expected a pandapower network, decoded {type(net).__name__}")
    return net


def _table_registry():
    """pandapower's JSON registry restricted to the net and pandas tables (anything else: DataError)."""
    from pandapower.io_utils import FromSerializableRegistry

    class TablesOnly(FromSerializableRegistry):
        def from_serializable(self):
            kind = (self.module_name, self.class_name)
            if kind == _NET:
                return FromSerializableRegistry.pandapowerNet(self)
            if kind in _SAFE_OBJECTS:
                reader = (
                    FromSerializableRegistry.DataFrame
                    if self.class_name == "DataFrame"
                    else FromSerializableRegistry.Series
                )
                return reader(self)
            raise DataError(f"refusing the embedded object {kind[0]}.{kind[1]}")

    return TablesOnly


def _check_safe(node: Any, path: Path, where: str) -> None:
    if isinstance(node, list):
        for k, item in enumerate(node):
            _check_safe(item, path, f"{where}[{k}]")
        return
    if not isinstance(node, dict):
        return
    if "_module" in node or "_class" in node:
        kind = (node.get("_module"), node.get("_class"))
        if kind != _NET and kind not in _SAFE_OBJECTS:
            raise DataError(
                f"network file {path}: refusing the embedded object {kind[0]}.{kind[1]} at {where}; only "
                "pandapower nets and pandas tables are read (a pandapower JSON file can name code to run)"
            )
        body = node.get("_object")
        if kind == _NET:
            if not isinstance(body, dict) or set(node) - {"_module", "_class", "_object"}:
                raise DataError(f"network file {path}: unexpected layout of the network object at {where}")
            _check_safe(body, path, f"{where}._object")
            return
        extra = set(node) - _TABLE_KEYS
        dtype = node.get("dtype", {})
        dtypes = dtype.values() if isinstance(dtype, dict) else [dtype]
        if extra or not isinstance(body, str) or not all(isinstance(d, str | bool) for d in dtypes):
            raise DataError(
                f"network file {path}: the table at {where} has an unexpected layout "
                f"(keys {sorted(map(str, node))}); expected the one pandapower.to_json writes"
            )
        try:
            inner = json.loads(body)
        except ValueError:
            raise DataError(f"network file {path}: the table at {where} does not hold JSON text") from None
        _check_safe(inner, path, f"{where}._object")
        return
    for key, value in node.items():
        _check_safe(value, path, f"{where}.{key}")


_PWL = (
    "{name}: {n} generators have piecewise-linear costs (pwl_cost), which are not supported; "
    "expected polynomial costs (poly_cost) of degree <= 2"
)


def _costs(gencost: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``c0, c1, c2 [n_gen]`` from PYPOWER ``gencost`` rows (polynomials of degree <= 2)."""
    model, n = gencost[:, _MODEL].astype(int), gencost[:, _NCOST].astype(int)
    if (model != _POLYNOMIAL).any():
        raise ConfigError(_PWL.format(name=name, n=int((model != _POLYNOMIAL).sum())))
    if (n > 3).any() or (n < 1).any():
        raise ConfigError(f"{name}: expected polynomial costs of degree <= 2, got {int(n.max()) - 1} coefficients")
    c = np.zeros((gencost.shape[0], 3))  # columns c2, c1, c0
    for g, k in enumerate(n):
        c[g, 3 - k :] = gencost[g, _COST : _COST + k]
    return c[:, 2].copy(), c[:, 1].copy(), c[:, 0].copy()


def case_from_arrays(
    name: str,
    gen_bus: np.ndarray,
    pmin: np.ndarray,
    pmax: np.ndarray,
    c1: np.ndarray,
    c2: np.ndarray,
    load_bus: np.ndarray,
    base_load: np.ndarray,
    branch_from: np.ndarray,
    branch_to: np.ndarray,
    branch_x: np.ndarray,
    fmax: np.ndarray | float = np.inf,
    slack: int = 0,
) -> DCOPFCase:
    """A small hand-made network: ``[n_branch]`` ends and reactances (p.u., no taps, shifts or fixed
    injections), ``[n_gen]`` units (MW, EUR/MWh, EUR/MW^2h, no constant cost), ``[n_load]`` loads (MW)."""
    n_bus = int(max(np.max(branch_from), np.max(branch_to), np.max(gen_bus), np.max(load_bus))) + 1
    bus = np.zeros((n_bus, 13))
    bus[:, 0], bus[:, _BUS_TYPE] = np.arange(n_bus), 1
    bus[slack, _BUS_TYPE] = _REF
    branch = np.zeros((len(branch_from), 13))
    branch[:, _F_BUS], branch[:, _T_BUS], branch[:, _BR_X] = branch_from, branch_to, branch_x
    branch[:, _BR_STATUS] = 1
    ptdf, offset = dc_network(100.0, bus, branch, slack, name)
    n_gen = len(gen_bus)
    return DCOPFCase(
        name=name,
        gen_bus=np.asarray(gen_bus, dtype=np.int64),
        pmin=np.asarray(pmin, dtype=np.float64),
        pmax=np.asarray(pmax, dtype=np.float64),
        c0=np.zeros(n_gen),
        c1=np.asarray(c1, dtype=np.float64),
        c2=np.asarray(c2, dtype=np.float64),
        load_bus=np.asarray(load_bus, dtype=np.int64),
        base_load=np.asarray(base_load, dtype=np.float64),
        fixed=np.zeros(n_bus),
        ptdf=ptdf,
        offset=offset,
        fmax=np.broadcast_to(np.asarray(fmax, dtype=np.float64), (len(branch_from),)).copy(),
        slack=slack,
        base_mva=100.0,
        bus=bus,
        branch=branch,
    )


def case_from_net(net, name: str) -> DCOPFCase:
    """The DC-OPF arrays of a pandapower ``net`` with the case's own line ratings (module doc)."""
    if len(net.get("pwl_cost", ())):
        raise ConfigError(_PWL.format(name=name, n=len(net.pwl_cost)))
    try:
        ppci, lookup = _ppci(net)
    except Exception as exc:  # noqa: BLE001 - pandapower's conversion raises many types for an inconsistent net
        raise DataError(f"{name}: pandapower cannot build its DC model ({one_line(exc)})") from None
    gen, branch, bus = ppci["gen"].real, ppci["branch"].real, ppci["bus"].real
    n_bus = bus.shape[0]
    on = gen[:, _GEN_STATUS] > 0
    if not on.any():
        raise DataError(f"{name}: no generator in service")
    c0, c1, c2 = _costs(ppci["gencost"][: gen.shape[0]].real, name)
    refs = np.flatnonzero(bus[:, _BUS_TYPE] == _REF)
    if refs.size == 0:
        raise DataError(f"{name}: no reference (slack) bus: the net needs an ext_grid or a slack gen")
    slack = int(refs[0])
    branch = branch[branch[:, _BR_STATUS] > 0]
    ptdf, offset = dc_network(float(ppci["baseMVA"]), bus, branch, slack, name)
    loads = net.load[net.load.in_service & ~net.load.get("controllable", False)]
    load_bus = np.asarray(lookup[loads.bus.to_numpy()], dtype=np.int64)
    inside = (load_bus >= 0) & (load_bus < n_bus)  # loads on buses pandapower took out (unconnected) do not count
    loads, load_bus = loads[inside], load_bus[inside]
    base_load = (loads.p_mw * loads.scaling).to_numpy(dtype=np.float64)
    fixed = -(bus[:, _PD] + bus[:, _GS]) + np.bincount(load_bus, weights=base_load, minlength=n_bus)
    rate = branch[:, _RATE_A]
    return DCOPFCase(
        name=name,
        gen_bus=gen[on, _GEN_BUS].astype(int),
        # pandapower widens zero limits by 1e-10 (its ``delta``); take them back to 0.
        pmin=_clean(gen[on, _PMIN]),
        pmax=_clean(gen[on, _PMAX]),
        c0=c0[on],
        c1=c1[on],
        c2=c2[on],
        load_bus=load_bus,
        base_load=base_load,
        fixed=_clean(fixed),
        ptdf=ptdf,
        offset=offset,
        fmax=np.where(rate > 0, rate, np.inf),
        slack=slack,
        base_mva=float(ppci["baseMVA"]),
        bus=bus.copy(),
        branch=branch.copy(),
    )


def load_case(
    spec: str, line_limits: str = "case", alpha: float = 1.1, floor: float = 0.1, time_limit: float | None = None
) -> DCOPFCase:
    """The DC-OPF arrays of network ``spec`` (a pandapower case name or file); module doc for ``line_limits``.

    ``time_limit`` (seconds) bounds the one solve that ``line_limits="base"`` needs.
    """
    if line_limits not in LINE_LIMITS:
        raise ConfigError(f"line_limits must be one of {', '.join(LINE_LIMITS)}, got {line_limits!r}")
    if alpha <= 0 or floor < 0:
        raise ConfigError(f"expected alpha > 0 and floor >= 0, got alpha={alpha}, floor={floor}")
    name = Path(spec).stem if is_network_file(spec) else spec
    case = case_from_net(load_net(spec), name)
    if line_limits == "case":
        return case
    from metamap.energy.highs import WarmDCOPF

    unlimited = replace(case, fmax=np.full_like(case.fmax, np.inf))
    base = WarmDCOPF(unlimited, time_limit=time_limit).solve(case.base_load)
    flow = np.abs(unlimited.flows(base.dispatch, case.base_load))
    return replace(case, fmax=np.maximum(alpha * flow, floor * flow.max()))
