"""The speed benchmark's record: per-method results, the headline ratios, and what was run how."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from metamap.bench.speed.inputs import (
    HIDDEN,
    INNER_LR,
    INNER_STEPS,
    K_SHOT,
    META_BATCH,
    METHODS,
    N_EPISODES,
    N_QUERY,
    OUTER_LR,
    PEERS,
    PER_TASK_PEERS,
    SEED,
)
from metamap.bench.speed.timing import MethodKey

Results = dict[str, dict[str, dict[str, Any]]]  # inner steps (as text) -> method -> its record

METHOD_DESCRIPTIONS = {
    "metamap": "make_learner('maml', MLP(1,[40,40],1), inner_steps=k, inner_lr=0.01).meta_backward + Adam",
    "metamap_vmap": "the same, with the MLP's layers in a plain nn.Sequential: vmap(functional_call) "
    "instead of MLP.batched_forward (not a peer)",
    "loop": "per task: functional_call + torch.autograd.grad(create_graph=True), dict SGD step",
    "higher": "per task: higher.innerloop_ctx(model, SGD, copy_initial_weights=False), diffopt.step, "
    "query loss / T backward inside the context",
    "torchopt_metasgd": "per task: torchopt.MetaSGD(model).step(loss), extract_state_dict / "
    "recover_state_dict between tasks, mean query loss backward",
    "torchopt_vmap": "torch.func.vmap over tasks of: torchopt.sgd + torch.func.grad + "
    "torchopt.apply_updates(inplace=False); mean query loss backward",
}


def collect_results(
    timings: dict[MethodKey, dict[str, Any]],
    memory: dict[MethodKey, dict[str, Any]],
    unavailable: dict[str, str],
) -> Results:
    """Per inner-step setting and method: its timing and memory, or why it did not run."""
    results: Results = {}
    for k in INNER_STEPS:
        results[str(k)] = {}
        for m in METHODS:
            if m in unavailable:
                results[str(k)][m] = {"available": False, "reason": unavailable[m]}
            else:
                results[str(k)][m] = {"available": True, **timings[(m, k)], "memory": memory[(m, k)]}
    return results


def headline_and_summary(results: Results, unavailable: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The headline speed-ups of metamap (vs the best peer, vs the plain loop) and the fuller summary."""

    def median(m: str, k: int) -> float:
        value: float = results[str(k)][m]["tasks_per_s"]["median"]
        return value

    def best_peer(k: int, among: Sequence[str] = PEERS) -> tuple[str | None, float | None]:
        ran = [m for m in among if m not in unavailable]
        if not ran:
            return None, None
        best = max(ran, key=lambda m: median(m, k))
        return best, median(best, k)

    best1, best1_tps = best_peer(1)
    best5, best5_tps = best_peer(5)
    headline = {
        "speedup_vs_best_peer": _ratio(median("metamap", 1), best1_tps),
        "speedup_vs_best_peer_5steps": _ratio(median("metamap", 5), best5_tps),
        "speedup_vs_loop": _ratio(median("metamap", 1), median("loop", 1)),
    }
    summary = {
        "best_peer_1step": best1,
        "best_peer_5steps": best5,
        "speedup_vs_loop_5steps": _ratio(median("metamap", 5), median("loop", 5)),
        "batched_forward_vs_vmap": _ratio(median("metamap", 1), median("metamap_vmap", 1)),
        "batched_forward_vs_vmap_5steps": _ratio(median("metamap", 5), median("metamap_vmap", 5)),
        "speedup_vs_best_per_task_peer": _ratio(median("metamap", 1), best_peer(1, PER_TASK_PEERS)[1]),
        "speedup_vs_best_per_task_peer_5steps": _ratio(median("metamap", 5), best_peer(5, PER_TASK_PEERS)[1]),
        "per_task_peers": list(PER_TASK_PEERS),
        "note": (
            "best peer = fastest of all peer implementations that ran, torchopt_vmap included; "
            "torchopt_vmap vectorizes over tasks with torch.func.vmap like metamap does, the "
            "per-task peers (higher, torchopt MetaSGD) loop over tasks in Python"
        ),
        "metamap_tasks_per_s_1step": median("metamap", 1),
        "metamap_tasks_per_s_5steps": median("metamap", 5),
        "speedup_per_peer": {
            str(k): {m: _ratio(median("metamap", k), median(m, k)) for m in PEERS + ("loop",) if m not in unavailable}
            for k in INNER_STEPS
        },
    }
    return headline, summary


def _ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``; ``None`` where either method did not run."""
    return None if a is None or b is None else a / b


def settings_record(threads: int, mode: dict[str, Any]) -> dict[str, Any]:
    """The protocol of the run as written into the JSON: model, tasks, optimizers, repetitions, how measured."""
    return {
        "model": f"MLP(1, {list(HIDDEN)}, 1), ReLU",
        "task_family": "Sinusoid (Finn et al. 2017): A~U[0.1,5], phase~U[0,pi], x~U[-5,5]",
        "k_shot": K_SHOT,
        "n_query": N_QUERY,
        "meta_batch": META_BATCH,
        "inner_lr": INNER_LR,
        "inner_optimizer": "SGD, second order (create_graph)",
        "outer_optimizer": f"torch.optim.Adam(lr={OUTER_LR})",
        "inner_steps": list(INNER_STEPS),
        "seed": SEED,
        "pre_sampled_meta_batches": N_EPISODES,
        "torch_num_threads": threads,
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        **mode,
        "timing": (
            "per round every (method, inner steps) runs its calibrated number of full meta-steps "
            "once, in an order rotated each round; tasks/s = steps * meta_batch / wall time "
            "(time.perf_counter); median, min, max over rounds; gc.collect() before each measurement"
        ),
        "memory": (
            "peak_tensor_mib: high-water mark of CPU tensor bytes allocated during one warm "
            "meta-step, above the level at its start (the running sum of the allocation/free events "
            "of torch.profiler(profile_memory=True)); Python objects are not counted. Process peak "
            "RSS (ru_maxrss, fresh subprocess per method) was rejected: it is set while importing "
            "torch and did not move during the meta-steps of any method"
        ),
    }
