"""The transportation problem: exact solvers, a fast batched approximation, and its repair.

``n`` demand points, ``m`` supply points, costs ``c [n, m]``, demands
``d [n]``, supplies ``s [m]``::

    minimize sum_ij c_ij x_ij   s.t.  sum_j x_ij = d_i,  sum_i x_ij <= s_j,  x >= 0

Exact solvers: POT's network simplex ``ot.emd`` and HiGHS (LP). ``ot.emd``
needs equal masses: when supply exceeds demand a dummy demand point with
zero costs takes the slack (``sum s - sum d``), and its column is dropped from
the plan. Total demand above total supply is infeasible (InfeasibleError).

The fast path (:func:`sinkhorn_plans`) runs batched entropic Sinkhorn
iterations in torch on many instances at once and :func:`round_to_feasible`
turns each approximate plan into a feasible one (scale rows/columns down to
the marginals, then put the missing mass on the residual supply greedily by
cheapest cost; the rounding of Altschuler, Weed and Rigollet 2017 with a
greedy fill): every returned plan meets the demands exactly and respects the
supplies. Its cost is above the optimum; the benchmark reports by how much.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from metamap.energy.dcopf import InfeasibleError, SolverError
from metamap.errors import DataError

TOLERANCE = 1e-6


@dataclass(frozen=True)
class TransportProblem:
    """One instance: ``cost [n, m]``, ``demand [n]``, ``supply [m]`` (float64), validated on creation."""

    cost: np.ndarray
    demand: np.ndarray
    supply: np.ndarray

    def __post_init__(self) -> None:
        cost, demand, supply = (np.asarray(a, dtype=np.float64) for a in (self.cost, self.demand, self.supply))
        object.__setattr__(self, "cost", cost)
        object.__setattr__(self, "demand", demand)
        object.__setattr__(self, "supply", supply)
        if cost.ndim != 2 or demand.shape != (cost.shape[0],) or supply.shape != (cost.shape[1],):
            raise DataError(
                f"transport: expected cost [n, m], demand [n], supply [m]; got cost {cost.shape}, "
                f"demand {demand.shape}, supply {supply.shape}"
            )
        for name, values in (("cost", cost), ("demand", demand), ("supply", supply)):
            if not np.isfinite(values).all():
                raise DataError(f"transport: {name} holds NaN or inf values")
        for name, values in (("demand", demand), ("supply", supply)):
            if (values < 0).any():
                raise DataError(f"transport: {name} must be >= 0; entry {int(np.argmin(values))} is {values.min():.4g}")
        if demand.sum() > supply.sum() * (1 + 1e-12) + TOLERANCE:
            raise InfeasibleError(f"transport: total demand {demand.sum():.6g} exceeds total supply {supply.sum():.6g}")

    def total_cost(self, plan: np.ndarray) -> float:
        return float((self.cost * plan).sum())

    def violation(self, plan: np.ndarray) -> float:
        """Worst violation of a plan ``[n, m]``: unmet/overmet demand, exceeded supply, negative flow."""
        return float(
            max(np.abs(plan.sum(1) - self.demand).max(), (plan.sum(0) - self.supply).max(), (-plan).max(), 0.0)
        )


def solve_emd(problem: TransportProblem, max_iterations: int = 10_000_000) -> np.ndarray:
    """Optimal plan ``[n, m]`` by network simplex (``ot.emd``), with a dummy demand point for slack supply.

    SolverError when the simplex stops after ``max_iterations`` pivots without proving optimality.
    """
    import warnings

    import ot

    if problem.demand.sum() == 0:
        return np.zeros_like(problem.cost)
    slack = max(problem.supply.sum() - problem.demand.sum(), 0.0)
    demand = np.append(problem.demand, slack)
    cost = np.vstack([problem.cost, np.zeros((1, problem.cost.shape[1]))])
    # ot.emd wants equal totals to machine precision.
    supply = problem.supply * (demand.sum() / problem.supply.sum())
    with warnings.catch_warnings():  # its warning says what the log says; the error below says it once
        warnings.simplefilter("ignore", UserWarning)
        plan, log = ot.emd(demand, supply, cost, numItermax=max_iterations, log=True)
    if log["result_code"] != 1:
        raise SolverError(f"transport: ot.emd stopped without an optimal plan ({log['warning']})")
    return np.asarray(plan)[:-1]


def solve_highs(problem: TransportProblem) -> np.ndarray:
    """Optimal plan ``[n, m]`` by HiGHS (dual simplex on the LP above).

    The instance is feasible and bounded (checked on creation), so any other status than optimal is
    a SolverError, never a proof of infeasibility.
    """
    import highspy

    n, m = problem.cost.shape
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n * m, n + m
    lp.col_cost_ = problem.cost.ravel()
    lp.col_lower_, lp.col_upper_ = np.zeros(n * m), np.full(n * m, highspy.kHighsInf)
    lp.row_lower_ = np.concatenate([problem.demand, np.full(m, -highspy.kHighsInf)])
    lp.row_upper_ = np.concatenate([problem.demand, problem.supply])
    # column (i, j) sits in demand row i and supply row n + j
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.arange(0, 2 * n * m + 1, 2, dtype=np.int32)
    i, j = np.divmod(np.arange(n * m), m)
    lp.a_matrix_.index_ = np.stack([i, n + j], 1).ravel().astype(np.int32)
    lp.a_matrix_.value_ = np.ones(2 * n * m)
    h.passModel(lp)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        raise SolverError(f"transport: HiGHS gave no optimal plan ({h.modelStatusToString(h.getModelStatus())})")
    return np.asarray(h.getSolution().col_value).reshape(n, m)


def random_problems(
    n: int, m: int, count: int, rng: np.random.Generator, family: str = "euclid"
) -> list[TransportProblem]:
    """``count`` instances of a family: points in the unit square, Euclidean costs (``euclid``) or
    uniform random costs (``uniform``); demands ~ U(1, 2); supplies scaled to 1.2x total demand."""
    problems = []
    for _ in range(count):
        if family == "euclid":
            a, b = rng.uniform(size=(n, 2)), rng.uniform(size=(m, 2))
            cost = np.linalg.norm(a[:, None] - b[None], axis=-1)
        else:
            cost = rng.uniform(size=(n, m))
        demand = rng.uniform(1, 2, size=n)
        supply = rng.uniform(1, 2, size=m)
        problems.append(TransportProblem(cost, demand, supply * 1.2 * demand.sum() / supply.sum()))
    return problems


def sinkhorn_plans(problems: list[TransportProblem], epsilon: float = 0.01, iterations: int = 200) -> torch.Tensor:
    """Approximate plans ``[B, n, m]`` (float64) by batched log-domain Sinkhorn (same n, m for all).

    Slack supply is handled as in :func:`solve_emd` (a dummy zero-cost demand
    point); costs are divided by their per-instance maximum, so ``epsilon``
    is relative.
    """
    cost = torch.as_tensor(np.stack([p.cost for p in problems]))
    demand = torch.as_tensor(np.stack([p.demand for p in problems]))
    supply = torch.as_tensor(np.stack([p.supply for p in problems]))
    slack = (supply.sum(1) - demand.sum(1)).clamp(min=0)
    a = torch.cat([demand, slack[:, None]], 1)
    cost = torch.cat([cost / cost.amax((1, 2), keepdim=True).clamp(min=1e-12), torch.zeros_like(cost[:, :1])], 1)
    kernel = -cost / epsilon
    log_a, log_b = a.clamp(min=1e-300).log(), supply.clamp(min=1e-300).log()
    f = torch.zeros_like(a)
    g = torch.zeros_like(supply)
    for _ in range(iterations):
        f = log_a - torch.logsumexp(kernel + g[:, None, :], dim=2)
        g = log_b - torch.logsumexp(kernel + f[:, :, None], dim=1)
    return torch.exp(kernel + f[:, :, None] + g[:, None, :])[:, :-1]


def round_to_feasible(problem: TransportProblem, plan: np.ndarray) -> np.ndarray:
    """A feasible plan close to ``plan [n, m]``: demands met exactly, supplies respected.

    Rows above their demand and columns above their supply are scaled down;
    the missing demand then goes, row by row, to the cheapest suppliers with
    residual supply. Raises InfeasibleError only if the instance is infeasible.
    """
    x = np.clip(np.nan_to_num(np.asarray(plan, dtype=np.float64)), 0.0, None)
    x *= np.minimum(1.0, problem.demand / np.maximum(x.sum(1), 1e-300))[:, None]
    x *= np.minimum(1.0, problem.supply / np.maximum(x.sum(0), 1e-300))[None, :]
    residual = problem.supply - x.sum(0)
    for i in np.flatnonzero(problem.demand - x.sum(1) > 0):
        missing = problem.demand[i] - x[i].sum()
        for j in np.argsort(problem.cost[i]):
            if missing <= 0:
                break
            put = min(missing, max(residual[j], 0.0))
            x[i, j] += put
            residual[j] -= put
            missing -= put
        if missing > TOLERANCE * max(problem.demand[i], 1.0):
            raise InfeasibleError(f"transport: demand {i} cannot be met from the residual supply")
    return x
