"""Per-sensor ridge regression: the linear "train on the target only" baseline.

A closed-form least-squares fit of the 12 normalized targets on the window's
inputs (plus a bias), one fit per sensor from its own support windows. Windows
with a missing target reading are left out of the fit.
"""

from __future__ import annotations

import torch


def fit_ridge(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, penalty: float) -> torch.Tensor:
    """Weights ``[n, F + 1, H]`` from ``x [n, S, F]``, ``y [n, S, H]``, ``mask [n, S, H]``.

    Minimizes ``sum_s w_s |[x_s, 1] W - y_s|^2 + penalty |W|^2`` (bias not penalized),
    with ``w_s`` = 1 for windows whose targets are all observed, else 0. A sensor with no such window
    (an outage over its whole support) gets zero weights: no correction to the base forecast.
    """
    design = _with_bias(x).double()
    weight = mask.all(-1).double()[..., None]
    gram = design.transpose(1, 2) @ (design * weight)
    ridge = torch.eye(design.shape[-1], dtype=torch.float64) * penalty
    ridge[-1, -1] = 0.0
    rhs = design.transpose(1, 2) @ (y.double() * weight)  # 0 for a sensor with no usable window
    unfit = weight.sum(dim=(1, 2)) == 0
    system = torch.where(unfit[:, None, None], torch.eye(design.shape[-1], dtype=torch.float64), gram + ridge)
    return torch.linalg.solve(system, rhs)


def predict_ridge(weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``x [n, W, F]`` -> ``[n, W, H]`` with weights from :func:`fit_ridge`."""
    return (_with_bias(x).double() @ weights).float()


def _with_bias(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones(*x.shape[:-1], 1, dtype=x.dtype)], dim=-1)
