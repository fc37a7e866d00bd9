"""Diffusion over a sensor graph (Li et al. 2018, DCRNN), parameter-free part.

A diffusion convolution of node signals ``X [N, F]`` over a weighted directed
graph is ``sum_k (P_f^k X) W_fk + (P_b^k X) W_bk`` with the forward and
backward random-walk matrices ``P_f = D_out^-1 A`` and ``P_b = D_in^-1 A^T``.
The diffused signals ``P^k X`` carry no parameters, so they are computed once
here; the weights ``W`` belong to whatever network reads them. Because ``W``
acts per node, the same weights serve graphs of any size.
"""

from __future__ import annotations

import torch

from metamap.errors import ShapeError, describe


def random_walk_matrices(adjacency: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward ``D_out^-1 A`` and backward ``D_in^-1 A^T`` transition matrices, each ``[N, N]``.

    Every node counts as its own neighbour with weight at least 1 (the
    DCRNN METR-LA graph already has a unit diagonal; distance graphs often
    do not), so no row is empty.
    """
    if adjacency.dim() != 2 or adjacency.shape[0] != adjacency.shape[1]:
        raise ShapeError(f"adjacency: expected a square [N, N] matrix, got {describe(adjacency)}")
    if not torch.isfinite(adjacency).all() or (adjacency < 0).any():
        raise ShapeError("adjacency: expected finite, non-negative edge weights")
    weights = adjacency.clone()
    diagonal = weights.diagonal()
    diagonal.clamp_(min=1.0)
    forward = weights / weights.sum(1, keepdim=True)
    backward = weights.T / weights.T.sum(1, keepdim=True)
    return forward, backward


def diffuse(signals: torch.Tensor, adjacency: torch.Tensor, hops: int) -> torch.Tensor:
    """Diffused signals ``[2 * hops, N, ...]``: ``P_f^1 X .. P_f^hops X, P_b^1 X .. P_b^hops X``.

    ``signals [N, ...]`` (e.g. a node's time series ``[N, T]``).
    """
    if signals.shape[0] != adjacency.shape[0]:
        raise ShapeError(f"diffuse: signals have {signals.shape[0]} nodes but the adjacency has {adjacency.shape[0]}")
    flat = signals.reshape(signals.shape[0], -1)
    out = []
    for matrix in random_walk_matrices(adjacency.to(flat.dtype)):
        h = flat
        for _ in range(hops):
            h = matrix @ h
            out.append(h.reshape(signals.shape))
    return torch.stack(out)
