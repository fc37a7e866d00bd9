"""Energy allocation and dispatch: transportation and DC-OPF with guaranteed feasibility.

- :mod:`~metamap.energy.dcopf`: DC-OPF arrays of any pandapower network (pandapower's PTDF, limits, costs);
- :mod:`~metamap.energy.highs`: the persistent, warm-started HiGHS QP (exact solver and baseline);
- :mod:`~metamap.energy.scenarios`: simbench 2016 load profiles mapped onto a case's loads, regimes;
- :mod:`~metamap.energy.feasibility`: check, repair and fallback, with the path of every answer;
- :mod:`~metamap.energy.learned`: the learned mapping loads -> dispatch and regime episodes;
- :mod:`~metamap.energy.transport`: the transportation problem (``ot.emd``, HiGHS, Sinkhorn + rounding);
- :mod:`~metamap.energy.commands`: ``metamap energy solve | train | adapt | transport``.
"""

from typing import TYPE_CHECKING

from metamap.extras import lazy_exports

# Names are imported on first use: highspy, POT and pandapower (the 'energy' extra) stay unimported until then.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "dcopf": ("DCOPFCase", "InfeasibleError", "SolverError", "UnboundedError", "case_names", "load_case"),
        "feasibility": ("PATHS", "GuaranteedDispatch", "check", "guaranteed_dispatch", "optimality_gap", "repair"),
        "highs": ("WarmDCOPF",),
        "learned": ("DispatchModel", "train_dispatch"),
        "transport": ("TransportProblem", "solve_emd", "solve_highs"),
    },
)

if TYPE_CHECKING:
    from metamap.energy.dcopf import (
        DCOPFCase,
        InfeasibleError,
        SolverError,
        UnboundedError,
        case_names,
        load_case,
    )
    from metamap.energy.feasibility import (
        PATHS,
        GuaranteedDispatch,
        check,
        guaranteed_dispatch,
        optimality_gap,
        repair,
    )
    from metamap.energy.highs import WarmDCOPF
    from metamap.energy.learned import DispatchModel, train_dispatch
    from metamap.energy.transport import TransportProblem, solve_emd, solve_highs

__all__ = [
    "PATHS",
    "DCOPFCase",
    "DispatchModel",
    "GuaranteedDispatch",
    "InfeasibleError",
    "SolverError",
    "TransportProblem",
    "UnboundedError",
    "WarmDCOPF",
    "case_names",
    "check",
    "guaranteed_dispatch",
    "load_case",
    "optimality_gap",
    "repair",
    "solve_emd",
    "solve_highs",
    "train_dispatch",
]
