"""Small DC-OPF cases whose answers can be worked out by hand, shared by the energy tests."""

from __future__ import annotations

import numpy as np

from metamap.energy.dcopf import DCOPFCase, case_from_arrays


def tiny_case(fmax=np.inf, c1=(0.0, 2.0), c2=(1.0, 1.0)) -> DCOPFCase:
    """Three buses in a triangle of equal reactances; gen 0 at bus 0 (slack), gen 1 at bus 1, a 10 MW load at
    bus 2; costs ``c1 p + c2 p^2`` per generator."""
    return case_from_arrays(
        "tiny",
        gen_bus=np.array([0, 1]),
        pmin=np.zeros(2),
        pmax=np.array([20.0, 20.0]),
        c1=np.array(c1),
        c2=np.array(c2),
        load_bus=np.array([2]),
        base_load=np.array([10.0]),
        branch_from=np.array([0, 1, 0]),
        branch_to=np.array([1, 2, 2]),
        branch_x=np.array([0.1, 0.1, 0.1]),
        fmax=fmax,
    )
