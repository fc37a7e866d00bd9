"""The exact DC-OPF solver: one persistent HiGHS model, warm-started between scenarios.

The model is built once per case (variables ``pg [n_gen]``; one balance row;
one row per limited branch, ``PTDF_g pg`` within ``[-fmax + PTDF_l pd -
fixed flow, fmax + PTDF_l pd - fixed flow]``): a QP with quadratic costs,
an LP when every cost is linear. A new load scenario changes only the row
bounds (``changeRowsBounds``); HiGHS then restarts from the previous
solution's basis / active set, which is what makes it fast compared with a
cold solve. This is the baseline the learned path must beat.

What a solve reports. Each HiGHS run has a time limit (``time_limit``
seconds, default :data:`DEFAULT_TIME_LIMIT`), and its model status is mapped
to one of :data:`STATUSES`: ``optimal``; ``infeasible`` (HiGHS proved there
is no feasible point); ``unbounded`` (proved: the cost falls without bound);
``failed`` (anything else: time or iteration limit, numerical trouble, the
ambiguous "unbounded or infeasible", "not set"). A warm run that does not end
``optimal`` is retried (:data:`RETRIES`): cold from scratch, cold without
presolve, and for an LP the interior-point method and simplex without
presolve. Only a cold run's proof is taken: ``solve`` raises
InfeasibleError / UnboundedError for a proof, SolverError when no attempt
answered, and never calls a failure infeasible. An "unbounded" answer for a
model whose every variable is bounded is a solver failure (it cannot be true).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import highspy
import numpy as np

from metamap.energy.dcopf import DCOPFCase, InfeasibleError, SolverError, UnboundedError
from metamap.errors import ConfigError

DEFAULT_TIME_LIMIT = 10.0  # seconds per HiGHS run; warm case118 solves take ~2 ms
STATUSES = ("optimal", "infeasible", "unbounded", "failed")
_STATUS = {
    highspy.HighsModelStatus.kOptimal: "optimal",
    highspy.HighsModelStatus.kInfeasible: "infeasible",
    highspy.HighsModelStatus.kUnbounded: "unbounded",
}
# (name, options) of the runs tried after a warm run fails; each starts cold (clearSolver).
RETRIES: tuple[tuple[str, dict[str, str], bool], ...] = (  # name, options, LP only
    ("cold", {}, False),
    ("cold, presolve off", {"presolve": "off"}, False),
    ("interior point", {"solver": "ipm"}, True),
    ("simplex, presolve off", {"solver": "simplex", "presolve": "off"}, True),
)
_DEFAULTS = {"presolve": "choose", "solver": "choose"}


def status_name(status: highspy.HighsModelStatus) -> str:
    """The :data:`STATUSES` entry of a HiGHS model status (``failed`` unless optimal or proved)."""
    return _STATUS.get(status, "failed")


@dataclass(frozen=True)
class DispatchSolution:
    """One scenario's optimal dispatch: ``dispatch [n_gen]`` MW, ``cost`` EUR/h, ``seconds`` (all attempts),
    ``attempts`` (HiGHS runs it took, 1 = the warm run answered)."""

    dispatch: np.ndarray
    cost: float
    seconds: float
    attempts: int = 1


class WarmDCOPF:
    """Persistent HiGHS model of a :class:`DCOPFCase`; ``solve(pd)`` per scenario.

    Args:
        case: the network.
        tolerance: HiGHS primal/dual feasibility tolerance (its default, 1e-7).
        time_limit: seconds per HiGHS run (``None``: :data:`DEFAULT_TIME_LIMIT`).
    """

    def __init__(self, case: DCOPFCase, tolerance: float = 1e-7, time_limit: float | None = None) -> None:
        time_limit = DEFAULT_TIME_LIMIT if time_limit is None else float(time_limit)
        if not time_limit > 0:
            raise ConfigError(f"time_limit must be > 0 seconds, got {time_limit}")
        self.case = case
        self.time_limit = time_limit
        self.limited = np.flatnonzero(np.isfinite(case.fmax))
        self.is_lp = not (case.c2 != 0).any()
        self.bounded = bool(np.isfinite(case.pmin).all() and np.isfinite(case.pmax).all())
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
        if not self.is_lp:  # 0.5 x'Qx with Q = diag(2 c2)
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
        demand = float(self.case.demand(pd))
        shift = self.case.ptdf_load[self.limited] @ pd - self.case.fixed_flow[self.limited]
        fmax = self.case.fmax[self.limited]
        return np.concatenate([[demand], shift - fmax]), np.concatenate([[demand], shift + fmax])

    def _run(self, options: dict[str, str], cold: bool) -> tuple[str, str]:
        """One HiGHS run with ``options`` (reset afterwards): (status name, HiGHS's own words)."""
        if cold:
            self.h.clearSolver()
        for key, value in options.items():
            self.h.setOptionValue(key, value)
        # HiGHS's time_limit counts from the object's creation, over all its runs: move it on every run
        self.h.setOptionValue("time_limit", self.h.getRunTime() + self.time_limit)
        try:
            self.h.run()
            status = self.h.getModelStatus()
        finally:
            for key in options:
                self.h.setOptionValue(key, _DEFAULTS[key])
        name = status_name(status)
        if name == "unbounded" and self.bounded:
            name = "failed"  # every variable is bounded: "unbounded" is a solver fault, not a fact
        return name, self.h.modelStatusToString(status)

    def solve(self, pd: np.ndarray) -> DispatchSolution:
        """Optimal dispatch for loads ``pd [n_load]`` MW.

        Raises InfeasibleError / UnboundedError when a cold HiGHS run proves
        it, SolverError when no attempt (the warm run and :data:`RETRIES`) answers.
        """
        start = time.perf_counter()
        pd = np.asarray(pd, dtype=np.float64)
        lower, upper = self._row_bounds(pd)
        self.h.changeRowsBounds(self._rows.size, self._rows, lower, upper)
        attempts = [("warm", {}, False)] + [r for r in RETRIES if self.is_lp or not r[2]]
        said = []
        for k, (label, options, _) in enumerate(attempts):
            name, words = self._run(options, cold=k > 0)
            said.append(f"{label}: {words}")
            if name == "optimal":
                dispatch = np.array(self.h.getSolution().col_value, dtype=np.float64)
                cost = float(self.h.getInfo().objective_function_value)
                return DispatchSolution(dispatch, cost, time.perf_counter() - start, k + 1)
            if k > 0 and name in ("infeasible", "unbounded"):
                self.h.clearSolver()  # the next scenario starts cold, not from a proof's last iterate
                error = InfeasibleError if name == "infeasible" else UnboundedError
                what = "no feasible dispatch" if name == "infeasible" else "a cost without lower bound"
                cause = ": line limits or generator limits cannot be met" if name == "infeasible" else ""
                raise error(
                    f"{self.case.name}: {what} for this load scenario (demand {float(self.case.demand(pd)):.1f} MW; "
                    f"HiGHS proved it: {'; '.join(said)}){cause}"
                )
        self.h.clearSolver()
        raise SolverError(
            f"{self.case.name}: HiGHS gave no answer for this load scenario (demand "
            f"{float(self.case.demand(pd)):.1f} MW; {'; '.join(said)}; time limit {self.time_limit:g} s per run): "
            "nothing is proved; raise the time limit or check the case"
        )

    def solve_many(
        self, pd: np.ndarray, progress: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Solve scenarios ``pd [N, n_load]`` in turn: ``dispatch [N, n_gen]``, ``cost [N]``, ``seconds [N]``
        (the time of each scenario, retries and infeasible ones included) and ``status [N]`` (:data:`STATUSES`).

        A scenario without an optimum gets NaN dispatch and cost, and its
        status says why (and is reported by the callers that need an answer).
        """
        from metamap.progress import progress_bar

        n = pd.shape[0]
        dispatch = np.full((n, self.case.n_gen), np.nan)
        cost, seconds = np.full(n, np.nan), np.zeros(n)
        status = np.full(n, "optimal", dtype=object)
        errors = {InfeasibleError: "infeasible", UnboundedError: "unbounded", SolverError: "failed"}
        for k in progress_bar(range(n), enabled=progress, desc=f"HiGHS {self.case.name}", leave=False):
            start = time.perf_counter()
            try:
                solution = self.solve(pd[k])
            except (InfeasibleError, UnboundedError, SolverError) as exc:
                seconds[k] = time.perf_counter() - start  # proving infeasibility takes time too
                status[k] = errors[type(exc)]
                continue
            dispatch[k], cost[k], seconds[k] = solution.dispatch, solution.cost, solution.seconds
        return dispatch, cost, seconds, status.astype(str)
