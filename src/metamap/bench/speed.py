"""The ``speed`` benchmark: meta-training throughput of second-order MAML.

What is measured: tasks per second of *full meta-training steps* on the
sinusoid model of Finn et al. 2017 (``MLP(1, [40, 40], 1)``, ReLU), with
5-shot support sets, 10 query points per task, 25 tasks per meta-batch,
inner SGD at lr 0.01 with second-order gradients, and Adam (lr 1e-3) on the
meta-parameters. One step = inner adaptation of every task + query loss +
backward + Adam step, on pre-sampled episodes (one fixed seed, identical for
every method). Two settings: 1 and 5 inner steps.

Methods (all compute the same meta-gradient; checked at start, see
:func:`gradient_agreement`):

- ``metamap_vmap``: the same learner on the same layers held in a plain
  ``nn.Sequential``, so it takes the generic ``vmap(functional_call)`` path
  instead of ``MLP.batched_forward``; not a peer, it measures what the
  batched forward saves.
- ``metamap``: ``make_learner("maml", ...)`` + ``meta_backward`` (vmap over
  tasks, one batched ``autograd.grad`` per inner step).
- ``loop``: the plain reference, per task ``functional_call`` +
  ``torch.autograd.grad(create_graph=True)``.
- ``higher``: ``higher.innerloop_ctx(model, SGD, copy_initial_weights=False)``
  per task, ``diffopt.step(loss)``, query loss backward inside the context
  (the library's MAML example).
- ``torchopt_metasgd``: torchopt's OOP API, ``torchopt.MetaSGD`` stepping the
  module per task, ``extract_state_dict``/``recover_state_dict`` between tasks
  (torchopt's few-shot MAML example).
- ``torchopt_vmap``: torchopt's functional API, ``torchopt.sgd`` +
  ``torchopt.apply_updates`` with ``torch.func.grad``, vmapped over the tasks
  (torchopt's functorch MAML example); this is the strongest peer.

Timing: ``torch.set_num_threads`` fixed (default 1: this model is far too
small for intra-op threads to help, and one thread makes every method's
number comparable and repeatable). Every method is warmed up and calibrated
to run about ``target_s`` seconds per measurement; then in each round every
(method, inner steps) pair is measured once, in an order that rotates from
round to round; tasks/s is reported as median, min and max over the rounds.

Memory: the peak of tensor bytes allocated during one meta-step, above the
level at its start, from the torch profiler's allocation events
(``profile_memory=True``, see :func:`tensor_peak_mib`), after the timing. The
process peak RSS (``ru_maxrss``) was tried first, in a fresh subprocess per
method: every method read the same value with zero increase over the level
before its first meta-step, because the process high-water mark is set while
torch is imported and a meta-step of this model needs only a few MiB. It is
therefore not reported.

Run as ``metamap bench speed [--quick] --json PATH`` or
``python -m metamap.bench.speed [--quick] --json PATH``.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.metadata
import json
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from metamap.arguments import add_json_flag
from metamap.learners import make_learner
from metamap.nn.mlp import MLP
from metamap.plotting import pyplot, save_png
from metamap.report import format_table, machine, write_json
from metamap.seeding import seeded
from metamap.tasks import Episode, Sinusoid, make_generator

# -- settings (Finn et al.'s sinusoid protocol) ----------------------------------------

HIDDEN = (40, 40)
K_SHOT = 5
N_QUERY = 10
META_BATCH = 25
INNER_LR = 0.01
OUTER_LR = 1e-3
INNER_STEPS = (1, 5)
SEED = 0
N_EPISODES = 16
THREADS = 1
GRAD_RTOL = 1e-4

METHODS = ("metamap", "metamap_vmap", "loop", "higher", "torchopt_metasgd", "torchopt_vmap")
PEERS = ("higher", "torchopt_metasgd", "torchopt_vmap")
PER_TASK_PEERS = ("higher", "torchopt_metasgd")
_LIBRARY = {"higher": "higher", "torchopt_metasgd": "torchopt", "torchopt_vmap": "torchopt"}


Params = dict[str, torch.Tensor]


def _mode(quick: bool) -> dict[str, Any]:
    """Repetition settings: full finishes in a few minutes on a quiet machine."""
    if quick:
        return {"rounds": 2, "target_s": 0.03, "warmup_steps": 1, "min_steps": 2}
    return {"rounds": 7, "target_s": 1.0, "warmup_steps": 5, "min_steps": 5}


# -- shared inputs ---------------------------------------------------------------------


def make_episodes(n: int = N_EPISODES, seed: int = SEED, n_tasks: int = META_BATCH) -> list[Episode]:
    """``n`` sinusoid meta-batches (x, y ``[n_tasks, 5 or 10, 1]``), the same for every method."""
    family = Sinusoid(k_shot=K_SHOT, n_query=N_QUERY)
    gen = make_generator(seed)
    return [family.sample(n_tasks, gen) for _ in range(n)]


def initial_state(seed: int = SEED) -> dict[str, torch.Tensor]:
    """Initial weights of the sinusoid MLP, drawn from ``seed`` without touching the global RNG."""
    with seeded(seed):
        model = MLP(1, list(HIDDEN), 1)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _model(state: dict[str, torch.Tensor]) -> MLP:
    model = MLP(1, list(HIDDEN), 1)
    model.load_state_dict(state)
    return model


# -- the methods -----------------------------------------------------------------------


class _Method:
    """One way to do a full meta-training step; ``meta_grad`` fills ``.grad`` of ``parameters()``."""

    name = ""

    def __init__(self, state: dict[str, torch.Tensor], inner_steps: int, inner_lr: float) -> None:
        self.model = _model(state)
        self.inner_steps = inner_steps
        self.inner_lr = inner_lr

    def parameters(self) -> list[nn.Parameter]:
        return list(self.model.parameters())

    def named_grads(self) -> dict[str, torch.Tensor]:
        return {n: p.grad.detach().clone() for n, p in self.model.named_parameters()}

    def meta_grad(self, episode: Episode) -> None:
        raise NotImplementedError

    def build_optimizer(self) -> None:
        self.optimizer = torch.optim.Adam(self.parameters(), lr=OUTER_LR)

    def step(self, episode: Episode) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.meta_grad(episode)
        self.optimizer.step()


class _Metamap(_Method):
    name = "metamap"

    def __init__(self, state, inner_steps, inner_lr):
        super().__init__(state, inner_steps, inner_lr)
        self.learner = make_learner("maml", self.model, inner_steps=inner_steps, inner_lr=inner_lr)

    def parameters(self):
        return list(self.learner.parameters())

    def meta_grad(self, episode):
        self.learner.meta_backward(episode)


class _MetamapVmap(_Metamap):
    """metamap's generic path: the same MLP seen as a plain ``nn.Sequential`` (no ``batched_forward``),
    so the learner runs ``vmap(functional_call)``. Not a peer: it measures what ``batched_forward`` saves."""

    name = "metamap_vmap"

    def __init__(self, state, inner_steps, inner_lr):
        _Method.__init__(self, state, inner_steps, inner_lr)
        self.model = nn.Sequential(*self.model)  # the same layers and weights, without batched_forward
        self.learner = make_learner("maml", self.model, inner_steps=inner_steps, inner_lr=inner_lr)


class _Loop(_Method):
    """Per task: functional_call forward, autograd.grad(create_graph=True), SGD step on a dict."""

    name = "loop"

    def meta_grad(self, episode):
        params = dict(self.model.named_parameters())
        losses = []
        for t in range(episode.n_tasks):
            fast = params
            for _ in range(self.inner_steps):
                loss = F.mse_loss(functional_call(self.model, fast, (episode.x_support[t],)), episode.y_support[t])
                grads = torch.autograd.grad(loss, list(fast.values()), create_graph=True)
                fast = {n: w - self.inner_lr * g for (n, w), g in zip(fast.items(), grads)}
            losses.append(F.mse_loss(functional_call(self.model, fast, (episode.x_query[t],)), episode.y_query[t]))
        torch.stack(losses).mean().backward()


class _Higher(_Method):
    """higher's MAML idiom: a differentiable copy of SGD per task, backward inside the context."""

    name = "higher"

    def __init__(self, state, inner_steps, inner_lr):
        super().__init__(state, inner_steps, inner_lr)
        import higher

        self.higher = higher
        self.inner_opt = torch.optim.SGD(self.model.parameters(), lr=inner_lr)

    def meta_grad(self, episode):
        n = episode.n_tasks
        for t in range(n):
            with self.higher.innerloop_ctx(self.model, self.inner_opt, copy_initial_weights=False) as (fmodel, diffopt):
                for _ in range(self.inner_steps):
                    diffopt.step(F.mse_loss(fmodel(episode.x_support[t]), episode.y_support[t]))
                query_loss = F.mse_loss(fmodel(episode.x_query[t]), episode.y_query[t])
                (query_loss / n).backward()


class _TorchoptMetaSGD(_Method):
    """torchopt's OOP idiom: MetaSGD steps the module in place; state dicts restored per task."""

    name = "torchopt_metasgd"

    def __init__(self, state, inner_steps, inner_lr):
        super().__init__(state, inner_steps, inner_lr)
        import torchopt

        self.torchopt = torchopt
        self.inner_opt = torchopt.MetaSGD(self.model, lr=inner_lr)

    def meta_grad(self, episode):
        torchopt = self.torchopt
        net_state = torchopt.extract_state_dict(self.model, by="reference", detach_buffers=True)
        opt_state = torchopt.extract_state_dict(self.inner_opt, by="reference")
        losses = []
        for t in range(episode.n_tasks):
            for _ in range(self.inner_steps):
                self.inner_opt.step(F.mse_loss(self.model(episode.x_support[t]), episode.y_support[t]))
            losses.append(F.mse_loss(self.model(episode.x_query[t]), episode.y_query[t]))
            torchopt.recover_state_dict(self.model, net_state)
            torchopt.recover_state_dict(self.inner_opt, opt_state)
        torch.stack(losses).mean().backward()


class _TorchoptVmap(_Method):
    """torchopt's functional idiom: torchopt.sgd + apply_updates under torch.func.grad, vmapped over tasks."""

    name = "torchopt_vmap"

    def __init__(self, state, inner_steps, inner_lr):
        super().__init__(state, inner_steps, inner_lr)
        import torchopt

        self.torchopt = torchopt
        self.inner_opt = torchopt.sgd(lr=inner_lr)

    def _task_loss(self, params, x_s, y_s, x_q, y_q):
        def support_loss(p):
            return F.mse_loss(functional_call(self.model, p, (x_s,)), y_s)

        opt_state = self.inner_opt.init(params)
        new = params
        for _ in range(self.inner_steps):
            grads = torch.func.grad(support_loss)(new)
            updates, opt_state = self.inner_opt.update(grads, opt_state, inplace=False)
            new = self.torchopt.apply_updates(new, updates, inplace=False)
        return F.mse_loss(functional_call(self.model, new, (x_q,)), y_q)

    def meta_grad(self, episode):
        params = dict(self.model.named_parameters())
        losses = torch.func.vmap(self._task_loss, in_dims=(None, 0, 0, 0, 0))(
            params, episode.x_support, episode.y_support, episode.x_query, episode.y_query
        )
        losses.mean().backward()


_CLASSES: dict[str, type[_Method]] = {
    cls.name: cls for cls in (_Metamap, _MetamapVmap, _Loop, _Higher, _TorchoptMetaSGD, _TorchoptVmap)
}


def build_method(name: str, state: dict[str, torch.Tensor], inner_steps: int, inner_lr: float = INNER_LR) -> _Method:
    """Method ``name`` (one of :data:`METHODS`) with weights ``state`` and its Adam optimizer."""
    method = _CLASSES[name](state, inner_steps, inner_lr)
    method.build_optimizer()
    return method


# -- peers: installed? importable? ------------------------------------------------------


def peer_status() -> dict[str, dict[str, Any]]:
    """Per library (higher, torchopt): available, version, and why not where it is not."""
    status: dict[str, dict[str, Any]] = {}
    for lib in ("higher", "torchopt"):
        entry: dict[str, Any] = {"available": False, "version": None, "reason": None}
        try:
            entry["version"] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            entry["reason"] = f"{lib} is not installed (pip install 'metamap[bench]')"
            status[lib] = entry
            continue
        try:
            importlib.import_module(lib)
        except Exception as exc:  # noqa: BLE001 - any import failure makes the peer unavailable
            entry["reason"] = f"import {lib} failed: {type(exc).__name__}: {_first_line(exc)}"
            status[lib] = entry
            continue
        entry["available"] = True
        if lib == "torchopt":
            entry.update(_torchopt_extension())
        status[lib] = entry
    return status


def _torchopt_extension() -> dict[str, Any]:
    """Whether torchopt's compiled ``_C`` loads against this torch, and what stands in for it."""
    info: dict[str, Any] = {}
    try:
        importlib.import_module("torchopt._C")
        info["compiled_extension"] = "loaded"
    except Exception as exc:  # noqa: BLE001
        info["compiled_extension"] = f"failed to load: {type(exc).__name__}: {_first_line(exc)[:300]}"
        try:
            importlib.import_module("torchopt.accelerated_op._src.adam_op")
            fallback = "torchopt.accelerated_op._src.adam_op (pure Python) is used instead"
        except Exception as exc2:  # noqa: BLE001
            fallback = f"no fallback importable: {type(exc2).__name__}: {_first_line(exc2)}"
        info["fallback"] = fallback
    info["extension_used_here"] = (
        "no: the extension only implements the fused (accelerated) Adam; this benchmark uses "
        "torchopt's SGD for the inner loop and torch.optim.Adam for the outer step"
    )
    return info


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


# -- gradient agreement -------------------------------------------------------------------


def meta_gradient(
    name: str, state: dict[str, torch.Tensor], inner_steps: int, episode: Episode, inner_lr: float = INNER_LR
) -> dict[str, torch.Tensor]:
    """Meta-gradient of the mean query loss of ``episode`` by method ``name`` from weights ``state``."""
    method = build_method(name, state, inner_steps, inner_lr)
    method.optimizer.zero_grad(set_to_none=True)
    method.meta_grad(episode)
    return method.named_grads()


def gradient_agreement(
    methods: Sequence[str],
    state: dict[str, torch.Tensor],
    inner_steps: int,
    episode: Episode,
    *,
    reference: str = "loop",
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
            out[name] = {"ok": False, "error": f"{type(exc).__name__}: {_first_line(exc)}"}
            continue
        flat = torch.cat([grads[k].flatten() for k in ref]).double()
        rel = float((flat - ref_flat).norm() / ref_flat.norm())
        per_tensor = max(
            float((grads[k].double() - ref[k].double()).norm() / ref[k].double().norm().clamp(min=1e-30)) for k in ref
        )
        out[name] = {"rel_err": rel, "max_tensor_rel_err": per_tensor, "ok": bool(rel <= rtol)}
    return out


# -- timing ----------------------------------------------------------------------------


def _run_steps(method: _Method, episodes: Sequence[Episode], n: int, offset: int = 0) -> float:
    """Seconds for ``n`` meta-steps, cycling through ``episodes`` from ``offset``."""
    gc.collect()
    start = time.perf_counter()
    for i in range(n):
        method.step(episodes[(offset + i) % len(episodes)])
    return time.perf_counter() - start


def _calibrate(method: _Method, episodes: Sequence[Episode], mode: dict[str, Any]) -> int:
    """Warm up, then choose the number of meta-steps that takes about ``target_s``."""
    _run_steps(method, episodes, mode["warmup_steps"])
    probe = max(2, mode["min_steps"])
    per_step = _run_steps(method, episodes, probe) / probe
    return int(min(5000, max(mode["min_steps"], math.ceil(mode["target_s"] / max(per_step, 1e-9)))))


def _time_all(
    methods: dict[tuple[str, int], _Method],
    episodes: Sequence[Episode],
    mode: dict[str, Any],
    progress: Callable[[str], None],
) -> dict[tuple[str, int], dict[str, Any]]:
    keys = list(methods)
    steps = {}
    for key in keys:
        steps[key] = _calibrate(methods[key], episodes, mode)
    samples: dict[tuple[str, int], list[float]] = {key: [] for key in keys}
    for r in range(mode["rounds"]):
        order = keys[r % len(keys) :] + keys[: r % len(keys)]
        for key in order:
            n = steps[key]
            seconds = _run_steps(methods[key], episodes, n, offset=r * 7)
            samples[key].append(n * META_BATCH / seconds)
        progress(f"round {r + 1}/{mode['rounds']} done")
    out = {}
    for key in keys:
        values = samples[key]
        out[key] = {
            "tasks_per_s": {"median": statistics.median(values), "min": min(values), "max": max(values)},
            "tasks_per_s_rounds": values,
            "meta_steps_per_measurement": steps[key],
            "ms_per_meta_step_median": 1000.0 * META_BATCH / statistics.median(values),
        }
    return out


# -- memory ---------------------------------------------------------------------------


def tensor_peak_mib(method: _Method, episode: Episode) -> tuple[float | None, str | None]:
    """Peak tensor memory (MiB) of one meta-step above the level at its start; ``(None, why)`` if unreadable.

    The level at the start is taken after the previous step's gradients are
    released (``zero_grad(set_to_none=True)``), i.e. the meta-parameters and
    optimizer state are not counted; everything the step allocates is.

    Read from the torch profiler's allocation events (``profile_memory=True``):
    every CPU tensor allocation and free during the step, in time order; the
    running sum's maximum is the step's high-water mark. Python objects (e.g.
    higher's patched module copies) are not tensors and are not counted.
    """
    try:
        from torch._C._profiler import _EventType
        from torch.profiler import ProfilerActivity, profile

        # release the previous step's gradients first: the profiler cannot see frees of blocks
        # allocated before it started, and they would inflate the level
        method.optimizer.zero_grad(set_to_none=True)
        gc.collect()
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            method.step(episode)

        def walk(nodes) -> Iterator:
            for node in nodes:
                yield node
                yield from walk(node.children)

        allocs = sorted(
            (n for n in walk(prof.profiler.kineto_results.experimental_event_tree()) if n.tag == _EventType.Allocation),
            key=lambda n: n.start_time_ns,
        )
        if not allocs:
            return None, "the profiler recorded no allocation events"
        level = peak = 0
        for node in allocs:
            level += node.extra_fields.alloc_size
            peak = max(peak, level)
        return peak / 2**20, None
    except Exception as exc:  # noqa: BLE001 - the profiler's event tree is an experimental API
        return None, f"{type(exc).__name__}: {_first_line(exc)}"


# -- the benchmark ----------------------------------------------------------------------


def run(quick: bool, json_path: Path, *, threads: int = THREADS) -> dict[str, Any]:
    """Run the benchmark, print a table, write ``json_path`` and a PNG beside it; returns the result."""
    json_path = Path(json_path)
    mode = _mode(quick)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run(quick, json_path, mode, threads)
    finally:
        torch.set_num_threads(previous_threads)


def _run(quick: bool, json_path: Path, mode: dict[str, Any], threads: int) -> dict[str, Any]:
    started = time.perf_counter()

    def progress(msg: str) -> None:
        print(f"[speed {time.perf_counter() - started:6.1f}s] {msg}", flush=True)

    peers = peer_status()
    unavailable: dict[str, str] = {}
    for name in PEERS:
        lib = peers[_LIBRARY[name]]
        if not lib["available"]:
            unavailable[name] = lib["reason"]

    state = initial_state()
    episodes = make_episodes()

    # 1. same computation? (all methods against the plain loop, same weights, same episode)
    check: dict[str, Any] = {
        "reference": "loop",
        "rtol": GRAD_RTOL,
        "episode": "first pre-sampled meta-batch",
        "inner_steps": {},
    }
    candidates = [m for m in METHODS if m not in unavailable]
    for k in INNER_STEPS:
        result = gradient_agreement([m for m in candidates if m != "loop"], state, k, episodes[0])
        check["inner_steps"][str(k)] = result
        if not result["metamap"]["ok"]:
            raise RuntimeError(
                f"metamap's MAML meta-gradient disagrees with the plain loop ({k} inner steps): {result['metamap']}"
            )
        for name, entry in result.items():
            if not entry["ok"] and name not in unavailable:
                why = (
                    f"raised {entry['error']}"
                    if "error" in entry
                    else f"differs from the plain loop's (relative error {entry['rel_err']:.3g} > {GRAD_RTOL})"
                )
                unavailable[name] = f"excluded: with {k} inner step(s) its meta-gradient {why}"
    check["ok"] = all(e["ok"] for r in check["inner_steps"].values() for e in r.values())
    progress(
        "meta-gradient check: "
        + ("every method that ran agrees" if check["ok"] else "disagreements")
        + "".join(f"; {m} not timed: {why}" for m, why in unavailable.items())
    )

    timed = [m for m in METHODS if m not in unavailable]

    # 2. throughput, alternating
    methods = {(m, k): build_method(m, state, k) for k in INNER_STEPS for m in timed}
    timings = _time_all(methods, episodes, mode, progress)

    # 3. memory: tensor high-water mark of one (warm) meta-step per method
    memory = {}
    for key, method in methods.items():
        peak, error = tensor_peak_mib(method, episodes[0])
        memory[key] = {"peak_tensor_mib": peak} if error is None else {"peak_tensor_mib": None, "error": error}
    progress("memory done")

    results: dict[str, dict[str, Any]] = {}
    for k in INNER_STEPS:
        results[str(k)] = {}
        for m in METHODS:
            if m in unavailable:
                results[str(k)][m] = {"available": False, "reason": unavailable[m]}
            else:
                results[str(k)][m] = {"available": True, **timings[(m, k)], "memory": memory[(m, k)]}

    def median(m: str, k: int) -> float:
        return results[str(k)][m]["tasks_per_s"]["median"]

    def best_peer(k: int, among: Sequence[str] = PEERS) -> tuple[str | None, float | None]:
        ran = [m for m in among if m not in unavailable]
        if not ran:
            return None, None
        best = max(ran, key=lambda m: median(m, k))
        return best, median(best, k)

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a / b

    best1, best1_tps = best_peer(1)
    best5, best5_tps = best_peer(5)
    headline = {
        "speedup_vs_best_peer": ratio(median("metamap", 1), best1_tps),
        "speedup_vs_best_peer_5steps": ratio(median("metamap", 5), best5_tps),
        "speedup_vs_loop": ratio(median("metamap", 1), median("loop", 1)),
    }
    summary = {
        "best_peer_1step": best1,
        "best_peer_5steps": best5,
        "speedup_vs_loop_5steps": ratio(median("metamap", 5), median("loop", 5)),
        "batched_forward_vs_vmap": ratio(median("metamap", 1), median("metamap_vmap", 1)),
        "batched_forward_vs_vmap_5steps": ratio(median("metamap", 5), median("metamap_vmap", 5)),
        "speedup_vs_best_per_task_peer": ratio(median("metamap", 1), best_peer(1, PER_TASK_PEERS)[1]),
        "speedup_vs_best_per_task_peer_5steps": ratio(median("metamap", 5), best_peer(5, PER_TASK_PEERS)[1]),
        "per_task_peers": list(PER_TASK_PEERS),
        "note": (
            "best peer = fastest of all peer implementations that ran, torchopt_vmap included; "
            "torchopt_vmap vectorizes over tasks with torch.func.vmap like metamap does, the "
            "per-task peers (higher, torchopt MetaSGD) loop over tasks in Python"
        ),
        "metamap_tasks_per_s_1step": median("metamap", 1),
        "metamap_tasks_per_s_5steps": median("metamap", 5),
        "speedup_per_peer": {
            str(k): {m: ratio(median("metamap", k), median(m, k)) for m in PEERS + ("loop",) if m not in unavailable}
            for k in INNER_STEPS
        },
    }

    payload = {
        "benchmark": "speed",
        "quick": quick,
        "headline": headline,
        "summary": summary,
        "settings": {
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
            **{k: v for k, v in mode.items()},
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
        },
        "methods": {
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
        },
        "peers": peers,
        "gradient_check": check,
        "results": results,
        "machine": machine(),
        "wall_s": time.perf_counter() - started,
    }
    write_json(json_path, payload)
    print(_table(results))
    print("headline:", json.dumps(headline))
    png = json_path.with_suffix(".png")
    _plot(results, png)
    progress(f"wrote {json_path} and {png}")
    return payload


def _table(results: dict[str, dict[str, Any]]) -> str:
    header = ["method", "inner steps", "tasks/s median", "min", "max", "metamap x", "tensor peak MiB"]
    rows = []
    for k, per_method in results.items():
        ours = per_method["metamap"]["tasks_per_s"]["median"]
        for m, r in per_method.items():
            if not r["available"]:
                rows.append([m, k, "n/a", "", "", "", ""])
                continue
            t = r["tasks_per_s"]
            rows.append(
                [m, k, t["median"], t["min"], t["max"], ours / t["median"], _num(r["memory"]["peak_tensor_mib"])]
            )
    return format_table(header, rows)


def _num(value: Any) -> Any:
    return "n/a" if value is None else float(value)


def _plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    fig, ax = pyplot().subplots(figsize=(9.5, 4.5))
    names = [m for m in METHODS if any(results[k][m]["available"] for k in results)]
    width = 0.8 / len(results)
    top = 0.0
    for i, (k, per_method) in enumerate(results.items()):
        xs, med, lo, hi = [], [], [], []
        for j, m in enumerate(names):
            r = per_method[m]
            if not r["available"]:
                continue
            t = r["tasks_per_s"]
            xs.append(j + (i - (len(results) - 1) / 2) * width)
            med.append(t["median"])
            lo.append(t["median"] - t["min"])
            hi.append(t["max"] - t["median"])
        label = f"{k} inner step{'s' if k != '1' else ''}"
        top = max([top, *(m + h for m, h in zip(med, hi))])
        bars = ax.bar(xs, med, width, yerr=[lo, hi], capsize=3, label=label)
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in med], fontsize=7, padding=2)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("tasks / s, log scale (median; bars: min-max over rounds)")
    ax.set_title(f"Second-order MAML meta-training, sinusoid MLP 1-40-40-1, {META_BATCH} tasks/batch")
    ax.set_ylim(top=top * 4)
    ax.legend(loc="upper center", ncols=2)
    ax.grid(axis="y", alpha=0.3, which="both")
    fig.tight_layout()
    save_png(fig, path, dpi=120)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metamap.bench.speed", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    add_json_flag(parser, default=Path("speed.json"))
    parser.add_argument("--threads", type=int, default=THREADS)
    args = parser.parse_args(argv)
    run(args.quick, args.json, threads=args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
