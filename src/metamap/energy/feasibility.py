"""Feasibility of dispatches: check, repair, and the fallback to the exact solver.

A learned model's candidates come out of :func:`complete` (its last layer:
the weighted projection onto the balance and the generator limits), so that
they meet both as produced; only line limits can fail. Every dispatch the
energy module returns goes through :func:`guaranteed_dispatch`:

1. ``check`` the candidate (balance, generator limits, line flows, within
   ``TOLERANCE_MW``); a candidate that passes is returned as ``learned``;
2. else ``repair`` it (clip to the generator limits, restore the balance by
   moving the mismatch onto the units with headroom in proportion to their
   headroom; where lines are still overloaded, ``repair_lines``: least-squares
   redispatch along the PTDF rows of the overloaded lines) and check again:
   ``repaired``;
3. else solve exactly with the warm-started HiGHS model: ``fallback``;
4. a scenario the exact solver proves infeasible is ``infeasible``; one it
   cannot answer (time limit, numerical failure after its retries, see
   :mod:`metamap.energy.highs`) is ``unsolved``: NaN dispatch and cost for
   both, never a silent wrong answer, and never "infeasible" without a proof.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from metamap.energy.dcopf import DCOPFCase, InfeasibleError, SolverError, UnboundedError, bdc_flows
from metamap.energy.highs import WarmDCOPF
from metamap.errors import ShapeError

TOLERANCE_MW = 1e-4
PATHS = ("learned", "repaired", "fallback", "infeasible", "unsolved")


@dataclass(frozen=True)
class Violations:
    """Worst violation per scenario, MW (0 = satisfied): ``balance``, ``gen``, ``line`` ``[N]``."""

    balance: np.ndarray
    gen: np.ndarray
    line: np.ndarray

    @property
    def ok(self) -> np.ndarray:
        """``[N]`` bool: every violation within ``TOLERANCE_MW``."""
        return (self.balance <= TOLERANCE_MW) & (self.gen <= TOLERANCE_MW) & (self.line <= TOLERANCE_MW)


def check(case: DCOPFCase, pd: np.ndarray, pg: np.ndarray, flows: str = "ptdf") -> Violations:
    """Violations of dispatches ``pg [N, n_gen]`` for loads ``pd [N, n_load]`` (MW); NaN counts as infinite.

    ``flows``: ``"ptdf"`` (the case's PTDF, :meth:`DCOPFCase.flows`) or ``"pandapower"`` (pandapower's
    B matrices solved for the bus angles, :func:`metamap.energy.dcopf.bdc_flows`: an independent check).
    """
    pg = np.asarray(pg, dtype=np.float64)
    balance = np.abs(pg.sum(-1) - case.demand(pd))
    gen = np.maximum(case.pmin - pg, pg - case.pmax).max(-1).clip(min=0.0)
    flow = case.flows(pg, pd) if flows == "ptdf" else bdc_flows(case, np.nan_to_num(pg), pd)
    line = (np.abs(flow) - case.fmax).max(-1).clip(min=0.0)
    nan = ~np.isfinite(pg).all(-1)
    return Violations(*(np.where(nan, np.inf, v) for v in (balance, gen, line)))


def repair(case: DCOPFCase, pd: np.ndarray, pg: np.ndarray) -> np.ndarray:
    """Clip ``pg [N, n_gen]`` to the limits, then balance it against ``pd [N, n_load]`` (MW).

    A shortfall is spread over the units in proportion to their headroom
    ``pmax - pg``, a surplus in proportion to ``pg - pmin``: the result meets
    the balance and the generator limits exactly whenever the demand (loads
    minus fixed injection) lies in ``[sum pmin, sum pmax]``. Line flows are not repaired (``check`` them).
    """
    pg = np.clip(np.nan_to_num(np.asarray(pg, dtype=np.float64), nan=0.0), case.pmin, case.pmax)
    mismatch = case.demand(pd)[..., None] - pg.sum(-1, keepdims=True)
    room = np.where(mismatch > 0, case.pmax - pg, pg - case.pmin)
    share = room / np.maximum(room.sum(-1, keepdims=True), 1e-12)
    return np.clip(pg + mismatch * share, case.pmin, case.pmax)


def complete(
    case: DCOPFCase, pd: np.ndarray, pg: np.ndarray, weight: np.ndarray | None = None, iterations: int = 80
) -> np.ndarray:
    """The completion layer: the weighted projection of ``pg [N, n_gen]`` onto balance and generator limits (MW).

    Returns ``clip(pg + lam * weight, pmin, pmax)`` with, per scenario, the
    shift ``lam`` (found by bisection, ``iterations`` halvings) at which the
    units supply exactly ``case.demand(pd)``: the point of the set ``{sum pg =
    demand, pmin <= pg <= pmax}`` nearest to ``pg`` in the norm weighted by
    ``1 / weight [n_gen]`` (MW, > 0; default 1: units that vary more take
    more of the mismatch). It meets the balance (to ~1e-9 MW) and the
    generator limits whenever the demand lies in ``[sum pmin, sum pmax]``;
    line flows are not touched (``check`` them). NaN entries count as 0.
    """
    pg = np.nan_to_num(np.asarray(pg, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    weight = np.ones(case.n_gen) if weight is None else np.asarray(weight, dtype=np.float64)
    if weight.shape != (case.n_gen,) or not (weight > 0).all():
        raise ShapeError(f"complete: expected weights [{case.n_gen}] > 0, got {weight.shape} {weight.min():.3g}")
    demand = case.demand(pd)
    # below lo every unit sits at pmin, above hi every unit at pmax: the balancing shift lies in between
    # (a unit without a limit is bounded by a shift that alone covers any mismatch)
    finite = np.abs(np.where(np.isfinite(case.pmin), case.pmin, 0)) + np.abs(
        np.where(np.isfinite(case.pmax), case.pmax, 0)
    )
    span = (np.abs(demand) + np.abs(pg).sum(-1) + finite.sum()) / weight.min()
    lo = np.maximum(((case.pmin - pg) / weight).min(-1), -span)
    hi = np.minimum(((case.pmax - pg) / weight).max(-1), span)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        short = np.clip(pg + mid[:, None] * weight, case.pmin, case.pmax).sum(-1) < demand
        lo, hi = np.where(short, mid, lo), np.where(short, hi, mid)
    return np.clip(pg + ((lo + hi) / 2)[:, None] * weight, case.pmin, case.pmax)


def repair_lines(
    case: DCOPFCase, pd: np.ndarray, pg: np.ndarray, iterations: int = 5, margin: float = 1e-3
) -> np.ndarray:
    """Push balanced dispatches ``pg [N, n_gen]`` back inside violated line limits (MW).

    Per scenario and iteration: the minimum-norm change of the units that are
    off their limits which keeps the balance and brings every violated line to
    ``(1 - margin) * fmax`` (a least-squares step on the PTDF rows), then
    clip + balance again (:func:`repair`). Scenarios it cannot fix stay
    infeasible and go to the exact solver.
    """
    pg = pg.copy()
    ptdf_gen = case.ptdf_gen
    for k in range(pg.shape[0]):
        for _ in range(iterations):
            flow = case.flows(pg[k], pd[k])
            over = np.flatnonzero(np.abs(flow) > case.fmax - TOLERANCE_MW)
            excess = np.abs(flow[over]) - case.fmax[over]
            if over.size == 0 or excess.max() <= 0:
                break
            free = (pg[k] > case.pmin + 1e-9) & (pg[k] < case.pmax - 1e-9)
            rows = np.vstack([np.ones(case.n_gen), ptdf_gen[over]])[:, free]
            target = np.concatenate([[0.0], -np.sign(flow[over]) * (excess + margin * case.fmax[over])])
            step, *_ = np.linalg.lstsq(rows, target, rcond=None)
            pg[k, free] += step
            pg[k] = repair(case, pd[k : k + 1], pg[k : k + 1])[0]
    return pg


@dataclass(frozen=True)
class GuaranteedDispatch:
    """Returned dispatches with how each was obtained.

    Attributes:
        dispatch: ``[N, n_gen]`` MW (NaN rows for infeasible scenarios).
        cost: ``[N]`` EUR/h (NaN for infeasible).
        path: ``[N]`` index into :data:`PATHS`.
        violations: the final check of what is returned.
    """

    dispatch: np.ndarray
    cost: np.ndarray
    path: np.ndarray
    violations: Violations

    def counts(self) -> dict[str, int]:
        """How many scenarios took each path."""
        return {name: int((self.path == k).sum()) for k, name in enumerate(PATHS)}

    @property
    def n_violations(self) -> int:
        """Returned (non-infeasible) scenarios that fail the check: 0 by construction."""
        return int((~self.violations.ok & returned_paths(self.path)).sum())


def guaranteed_dispatch(
    case: DCOPFCase,
    pd: np.ndarray,
    predict: Callable[[np.ndarray], np.ndarray] | None,
    exact: WarmDCOPF,
) -> GuaranteedDispatch:
    """Dispatch every scenario of ``pd [N, n_load]`` (MW) feasibly; see the module doc.

    ``predict`` maps loads ``[N, n_load]`` to candidate dispatches ``[N, n_gen]``
    (``None``: solve everything exactly).
    """
    pd = case.check_loads(pd, allow_infeasible=True)
    n = pd.shape[0]
    if predict is None:
        candidate = np.full((n, case.n_gen), np.nan)
    else:
        candidate = np.asarray(predict(pd), dtype=np.float64)
        if candidate.shape != (n, case.n_gen):
            raise ShapeError(
                f"predict returned shape {candidate.shape}; expected {(n, case.n_gen)} (scenarios, generators)"
            )
    path = np.full(n, PATHS.index("learned"))
    if predict is None:
        failed = np.arange(n)
    else:
        passed = check(case, pd, candidate).ok
        candidate[~passed] = repair(case, pd[~passed], candidate[~passed])
        path[~passed] = PATHS.index("repaired")
        lines = np.flatnonzero(~check(case, pd, candidate).ok)
        candidate[lines] = repair_lines(case, pd[lines], candidate[lines])
        failed = np.flatnonzero(~check(case, pd, candidate).ok)
    for k in failed:
        path[k] = PATHS.index("fallback")
        try:
            candidate[k] = exact.solve(pd[k]).dispatch
        except InfeasibleError:
            candidate[k] = np.nan
            path[k] = PATHS.index("infeasible")
        except (SolverError, UnboundedError):
            candidate[k] = np.nan
            path[k] = PATHS.index("unsolved")
    final = check(case, pd, candidate)
    # HiGHS may return a point a hair outside TOLERANCE_MW on a degenerate scenario: never pass it on, and
    # never call it infeasible either (nothing was proved).
    bad = np.flatnonzero(~final.ok & returned_paths(path))
    candidate[bad] = np.nan
    path[bad] = PATHS.index("unsolved")
    cost = np.where(returned_paths(path), case.cost(np.nan_to_num(candidate)), np.nan)
    return GuaranteedDispatch(candidate, cost, path, check(case, pd, candidate))


def feasible_counts(result: GuaranteedDispatch, raw: Violations | None = None) -> dict[str, int]:
    """Scenarios with a feasible dispatch at each stage of :func:`guaranteed_dispatch`.

    ``raw_network``: the network's own output passes (``raw``: its ``check``, before the completion
    layer; omitted without it); ``as_produced``: the candidate passes as it came (path ``learned``);
    ``after_correction``: also the repaired ones; ``after_fallback``: every scenario that got a dispatch.
    """
    counts = result.counts()
    stages = {} if raw is None else {"raw_network": int(raw.ok.sum())}
    return {
        **stages,
        "as_produced": counts["learned"],
        "after_correction": counts["learned"] + counts["repaired"],
        "after_fallback": int(returned_paths(result.path).sum()),
    }


def returned_paths(path: np.ndarray) -> np.ndarray:
    """``[N]`` bool: the scenarios of ``path [N]`` that got a dispatch (not ``infeasible`` / ``unsolved``)."""
    return np.isin(path, [PATHS.index("infeasible"), PATHS.index("unsolved")], invert=True)


def gap_summary(gap: np.ndarray) -> dict[str, float | None]:
    """Mean, median, p99 and worst of gaps ``[N]`` (fractions), in % (None for no gaps)."""
    if gap.size == 0:
        return {"gap_pct_mean": None, "gap_pct_median": None, "gap_pct_p99": None, "gap_pct_max": None}
    return {
        "gap_pct_mean": float(gap.mean() * 100),
        "gap_pct_median": float(np.median(gap) * 100),
        "gap_pct_p99": float(np.quantile(gap, 0.99) * 100),
        "gap_pct_max": float(gap.max() * 100),
    }


def optimality_gap(cost: np.ndarray, optimal: np.ndarray) -> np.ndarray:
    """Relative gap ``(cost - optimal) / |optimal|`` per scenario (>= 0 for feasible points)."""
    return (np.asarray(cost) - np.asarray(optimal)) / np.abs(np.asarray(optimal))
