"""Do all methods compute the same meta-gradient? Checked against the plain loop before anything is timed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from metamap.bench.speed.failures import first_line
from metamap.bench.speed.inputs import GRAD_RTOL, INNER_LR, INNER_STEPS, METHODS
from metamap.bench.speed.methods import Params, build_method
from metamap.tasks import Episode

REFERENCE = "loop"


def meta_gradient(name: str, state: Params, inner_steps: int, episode: Episode, inner_lr: float = INNER_LR) -> Params:
    """Meta-gradient of the mean query loss of ``episode`` by method ``name`` from weights ``state``."""
    method = build_method(name, state, inner_steps, inner_lr)
    method.optimizer.zero_grad(set_to_none=True)
    method.meta_grad(episode)
    return method.named_grads()


def gradient_agreement(
    methods: Sequence[str],
    state: Params,
    inner_steps: int,
    episode: Episode,
    *,
    reference: str = REFERENCE,
    rtol: float = GRAD_RTOL,
    inner_lr: float = INNER_LR,
) -> dict[str, dict[str, Any]]:
    """Compare each method's meta-gradient with ``reference``'s on one episode and one set of weights.

    Returns per method ``rel_err`` (``||g - g_ref|| / ||g_ref||`` over all
    parameters together), ``max_tensor_rel_err`` (the same per parameter
    tensor, worst one), and ``ok`` (``rel_err <= rtol``); a method that raises
    gets ``ok: False`` and ``error``.
    """
    ref = meta_gradient(reference, state, inner_steps, episode, inner_lr)
    ref_flat = torch.cat([g.flatten() for g in ref.values()]).double()
    out: dict[str, dict[str, Any]] = {}
    for name in methods:
        try:
            grads = meta_gradient(name, state, inner_steps, episode, inner_lr)
        except Exception as exc:  # noqa: BLE001 - a peer failing is a result, not a crash
            out[name] = {"ok": False, "error": f"{type(exc).__name__}: {first_line(exc)}"}
            continue
        flat = torch.cat([grads[k].flatten() for k in ref]).double()
        rel = float((flat - ref_flat).norm() / ref_flat.norm())
        per_tensor = max(
            float((grads[k].double() - ref[k].double()).norm() / ref[k].double().norm().clamp(min=1e-30)) for k in ref
        )
        out[name] = {"rel_err": rel, "max_tensor_rel_err": per_tensor, "ok": bool(rel <= rtol)}
    return out


def check_all_methods(state: Params, episode: Episode, unavailable: dict[str, str]) -> dict[str, Any]:
    """The gradient check of the run: every method that can run against the plain loop, for each inner-step setting.

    ``unavailable`` (method -> why) comes in holding the peers that cannot
    run; a method whose meta-gradient disagrees or raises is added to it, with
    the first setting where it failed. Raises ``RuntimeError`` where metamap's
    own MAML disagrees: then no number of the benchmark means anything.
    """
    check: dict[str, Any] = {
        "reference": REFERENCE,
        "rtol": GRAD_RTOL,
        "episode": "first pre-sampled meta-batch",
        "inner_steps": {},
    }
    candidates = [m for m in METHODS if m not in unavailable and m != REFERENCE]
    for k in INNER_STEPS:
        result = gradient_agreement(candidates, state, k, episode)
        check["inner_steps"][str(k)] = result
        if not result["metamap"]["ok"]:
            raise RuntimeError(
                f"metamap's MAML meta-gradient disagrees with the plain loop ({k} inner steps): {result['metamap']}"
            )
        for name, entry in result.items():
            if not entry["ok"] and name not in unavailable:
                unavailable[name] = f"excluded: with {k} inner step(s) its meta-gradient {_why(entry)}"
    check["ok"] = all(e["ok"] for r in check["inner_steps"].values() for e in r.values())
    return check


def _why(entry: dict[str, Any]) -> str:
    """What went wrong with a method that failed the check (``entry`` from :func:`gradient_agreement`)."""
    if "error" in entry:
        return f"raised {entry['error']}"
    return f"differs from the plain loop's (relative error {entry['rel_err']:.3g} > {GRAD_RTOL})"
