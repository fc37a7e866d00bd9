"""The exact DC-OPF solver: one persistent HiGHS QP, warm-started between scenarios.

The model is built once per case (variables ``pg [n_gen]``; one balance row;
one row per limited branch, ``PTDF_g pg`` within ``[-fmax + PTDF_l pd,
fmax + PTDF_l pd]``). A new load scenario changes only the row bounds
(``changeRowsBounds``); HiGHS then restarts from the previous solution's
basis / active set, which is what makes it fast compared with a cold solve.
This is the baseline the learned path must beat.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import highspy
import numpy as np

from metamap.energy.dcopf import DCOPFCase, InfeasibleError


@dataclass(frozen=True)
class DispatchSolution:
    """One scenario's optimal dispatch: ``dispatch [n_gen]`` MW, ``cost`` EUR/h, solve ``seconds``."""

    dispatch: np.ndarray
    cost: float
    seconds: float


class WarmDCOPF:
    """Persistent HiGHS model of a :class:`DCOPFCase`; ``solve(pd)`` per scenario.

    Args:
        case: the network.
        tolerance: HiGHS primal/dual feasibility tolerance (its default, 1e-7).
    """

    def __init__(self, case: DCOPFCase, tolerance: float = 1e-7) -> None:
        self.case = case
        self.limited = np.flatnonzero(np.isfinite(case.fmax))
        self.h = highspy.Highs()
        self.h.setOptionValue("output_flag", False)
        self.h.setOptionValue("primal_feasibility_tolerance", tolerance)
        self.h.setOptionValue("dual_feasibility_tolerance", tolerance)
        rows = np.vstack([np.ones((1, case.n_gen)), case.ptdf_gen[self.limited]])
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = case.n_gen, rows.shape[0]
        lp.col_cost_ = case.c1.astype(np.float64)
        lp.col_lower_, lp.col_upper_ = case.pmin.astype(np.float64), case.pmax.astype(np.float64)
        lower, upper = self._row_bounds(case.base_load)
        lp.row_lower_, lp.row_upper_ = lower, upper
        lp.offset_ = float(case.c0.sum())
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = np.arange(0, rows.size + 1, rows.shape[0], dtype=np.int32)
        lp.a_matrix_.index_ = np.tile(np.arange(rows.shape[0], dtype=np.int32), case.n_gen)
        lp.a_matrix_.value_ = rows.T.ravel().astype(np.float64)
        model = highspy.HighsModel()
        model.lp_ = lp
        if (case.c2 != 0).any():  # 0.5 x'Qx with Q = diag(2 c2)
            hessian = highspy.HighsHessian()
            hessian.dim_ = case.n_gen
            hessian.format_ = highspy.HessianFormat.kTriangular
            hessian.start_ = np.arange(case.n_gen + 1, dtype=np.int32)
            hessian.index_ = np.arange(case.n_gen, dtype=np.int32)
            hessian.value_ = (2.0 * case.c2).astype(np.float64)
            model.hessian_ = hessian
        self.h.passModel(model)
        self._rows = np.arange(rows.shape[0], dtype=np.int32)

    def _row_bounds(self, pd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        total = float(pd.sum())
        shift = self.case.ptdf_load[self.limited] @ pd
        fmax = self.case.fmax[self.limited]
        return np.concatenate([[total], shift - fmax]), np.concatenate([[total], shift + fmax])

    def solve(self, pd: np.ndarray) -> DispatchSolution:
        """Optimal dispatch for loads ``pd [n_load]`` MW; InfeasibleError if there is none."""
        start = time.perf_counter()
        lower, upper = self._row_bounds(np.asarray(pd, dtype=np.float64))
        self.h.changeRowsBounds(self._rows.size, self._rows, lower, upper)
        self.h.run()
        status = self.h.getModelStatus()
        if status != highspy.HighsModelStatus.kOptimal:
            raise InfeasibleError(
                f"{self.case.name}: no feasible dispatch for this load scenario (total {float(np.sum(pd)):.1f} MW; "
                f"HiGHS says {self.h.modelStatusToString(status)}): line limits or generator limits cannot be met"
            )
        dispatch = np.array(self.h.getSolution().col_value, dtype=np.float64)
        cost = float(self.h.getInfo().objective_function_value)
        return DispatchSolution(dispatch, cost, time.perf_counter() - start)

    def solve_many(self, pd: np.ndarray, progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Solve scenarios ``pd [N, n_load]`` in turn: ``dispatch [N, n_gen]``, ``cost [N]``, ``seconds [N]``
        (the time of each attempt, infeasible ones included).

        An infeasible scenario gets NaN dispatch and cost (and is reported by
        the callers that need a feasible answer).
        """
        from metamap.progress import progress_bar

        n = pd.shape[0]
        dispatch = np.full((n, self.case.n_gen), np.nan)
        cost, seconds = np.full(n, np.nan), np.zeros(n)
        for k in progress_bar(range(n), enabled=progress, desc=f"HiGHS {self.case.name}", leave=False):
            start = time.perf_counter()
            try:
                solution = self.solve(pd[k])
            except InfeasibleError:
                seconds[k] = time.perf_counter() - start  # proving infeasibility takes time too
                continue
            dispatch[k], cost[k], seconds[k] = solution.dispatch, solution.cost, solution.seconds
        return dispatch, cost, seconds
