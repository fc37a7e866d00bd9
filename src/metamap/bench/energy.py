"""Benchmark ``energy``: DC-OPF on case118 with guaranteed feasibility, regime adaptation, transport.

Three parts, all on one CPU thread:

1. **Throughput** (case118, simbench 2016 load profiles, line limits from the
   base case; see :mod:`metamap.energy.dcopf`): a :class:`DispatchModel`
   trained on solved scenarios drawn over the whole year maps 10,000 new
   scenarios to dispatches, its network's output completed onto the balance
   and the generator limits (:func:`~metamap.energy.feasibility.complete`),
   through :func:`guaranteed_dispatch` (check, repair, fallback to HiGHS).
   Counted over the scenarios HiGHS solves: feasible as the network gives
   them, as the model produces them (completion included, nothing repaired),
   before the fallback, after it; gaps mean / median / p99 / max; every
   returned dispatch checked again on pandapower's B-matrix flows
   (:func:`~metamap.energy.dcopf.bdc_flows`); the same model without the
   completion layer beside it (``without_completion``). Baseline: the persistent warm-started HiGHS QP on the
   same scenarios (its result is kept in ``<json stem>_runs/throughput.json``
   and reused by a rerun with the same settings). Speedup = HiGHS total solve time / learned-path wall time
   (median of 3 runs of the learned path); gap over the scenarios feasible
   for HiGHS.
2. **New regime from 50 scenarios**: regimes are (season, time of day,
   branch outage); the learners meta-train on source regimes (no outage and
   five single-branch outages: 96 regimes) and adapt to target regimes (two
   other branches out: 32 regimes; a regime with fewer than 100 scenarios
   that HiGHS finds feasible is dropped) from 50
   solved scenarios; gap on 50 query scenarios per target regime of what the
   guaranteed path returns for each method's completed predictions (check,
   repair, fallback; so every point is feasible), with the fallback count beside it. Against: an MLP trained from scratch on the 50,
   the single model trained on all source regimes (as is, and fine-tuned).
   Every method's adaptation settings (fine-tuning steps and rate, the
   scratch network's steps and rate, the meta-learners' steps, 0 included)
   are chosen on validation regimes: a third branch out, neither a source nor
   a target outage, never the targets (``adaptation_chosen_on_val`` lists
   every candidate's validation MSE). The meta-learners' adaptation is
   guarded (:mod:`metamap.experiment.guard`; ``adaptation_guard_fallbacks``). The gated optimizer (Adam base) is meta-trained on the source regimes from
   the single model's weights and compared with Adam, SGD (same init) and
   Meta-SGD (its own meta-learned init and rates): steps to the loss Adam
   reaches after half the steps.
3. **Transportation** up to 50 x 200: ``ot.emd`` and HiGHS against batched
   Sinkhorn + rounding to a feasible plan, per instance and batched.
"""

from __future__ import annotations

import copy
import statistics
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metamap.bench.cache import load_cached, runs_folder, save_cached
from metamap.energy.dcopf import load_case
from metamap.energy.feasibility import (
    PATHS,
    TOLERANCE_MW,
    check,
    complete,
    gap_summary,
    guaranteed_dispatch,
    optimality_gap,
    returned_paths,
)
from metamap.energy.highs import WarmDCOPF
from metamap.energy.learned import (
    FINETUNE_CANDIDATES,
    RegimeData,
    RegimeFit,
    fit_network,
    fit_scalers,
    in_mw,
    make_network,
    regime_episode,
    standardized,
    standardized_mse,
    train_dispatch,
)
from metamap.energy.scenarios import SEASONS, TIMES_OF_DAY, assign_types, load_profiles, sample_loads
from metamap.energy.transport import random_problems, round_to_feasible, sinkhorn_plans, solve_emd, solve_highs
from metamap.experiment import (
    AdaptedLearner,
    Choice,
    Method,
    ResultTable,
    Settings,
    ValidationTask,
    choose_on_validation,
)
from metamap.learners import AdaptOptions, GatedOptimizer, make_learner
from metamap.plotting import pyplot, save_png
from metamap.preprocessing import Standardizer
from metamap.report import format_table, machine, mean_ci95, write_json
from metamap.seeding import seeded
from metamap.training.trainer import Trainer

# source/target outages: indices into the outage candidates (None: all branches in service)
FULL = dict(
    train=4000,
    test=10_000,
    per_regime=100,
    hidden=(256, 256),
    steps=3000,
    meta_steps=500,
    gated_steps=150,
    transport=10,
    repeats=3,
    source_outages=(None, 0, 1, 2, 3, 4),
    target_outages=(5, 6),
    validation_outage=7,
    support=50,
    query=50,
    scratch_steps=1000,
    seasons=tuple(SEASONS),
    times_of_day=tuple(TIMES_OF_DAY),
)
QUICK = dict(
    train=60,
    test=40,
    per_regime=25,
    hidden=(16, 16),
    steps=20,
    meta_steps=2,
    gated_steps=1,
    transport=1,
    repeats=1,
    source_outages=(None, 0),
    target_outages=(1,),
    validation_outage=2,
    support=8,
    query=8,
    scratch_steps=20,
    seasons=("winter", "summer"),
    times_of_day=("morning", "evening"),
)
THROUGHPUT_SETTINGS = ("train", "test", "hidden", "steps", "repeats")  # what part 1 depends on, besides the case
# the network model's version: a kept throughput result of an older model (PTDF without taps) is not reused
NETWORK_MODEL = "pandapower makePTDF + makeBdc"
LEARNED_PATH = "completion layer, then check / repair / fallback"  # a kept result of an older path is not reused
ADAPT_STEPS = 50  # length of the gated optimizer's adaptation curves
INNER_LR = 0.03
VALIDATION_SEED = 2
# Adaptation settings chosen on the validation regimes (cheapest first); scratch's depend on cfg["scratch_steps"].
META_CANDIDATES: list[Settings] = [{"steps": s} for s in (0, 1, 5, 10, 25, 50, 100, 200, 400, 800, 1600)]


def _solved(
    exact: WarmDCOPF, pd: np.ndarray, progress: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The scenarios of ``pd`` HiGHS solves to optimality, with their exact dispatch, cost and solve seconds."""
    pg, cost, seconds, status = exact.solve_many(pd, progress=progress)
    ok = status == "optimal"
    return pd[ok], pg[ok], cost[ok], seconds[ok]


def throughput(case, profiles, types, cfg, rng) -> dict[str, Any]:
    """Part 1: learned path with guarantees against warm HiGHS on ``cfg["test"]`` scenarios of the year."""
    exact = WarmDCOPF(case)
    year = np.arange(profiles.values.shape[0])
    pd_train, pg_train, _, _ = _solved(exact, sample_loads(case, profiles, types, year, cfg["train"], rng))
    started = time.perf_counter()
    model = train_dispatch(pd_train, pg_train, hidden=cfg["hidden"], steps=cfg["steps"])
    train_seconds = time.perf_counter() - started
    pd_test = sample_loads(case, profiles, types, year, cfg["test"], rng)
    pg_exact, cost_exact, seconds, status = exact.solve_many(pd_test, progress=True)
    highs_total = float(seconds.sum())
    walls, result = [], None
    for _ in range(cfg["repeats"]):
        started = time.perf_counter()
        result = guaranteed_dispatch(case, pd_test, partial(model.predict_complete, case), exact)
        walls.append(time.perf_counter() - started)
    learned_wall = statistics.median(walls)
    feasible = status == "optimal"
    gap = _gaps(result, cost_exact, feasible)
    counts = result.counts()
    returned = returned_paths(result.path)
    # every stage over the scenarios HiGHS solves: the network alone, the model (network + completion layer)
    # as produced, after the cheap correction (line repair), after the fallback
    raw = check(case, pd_test, model.predict(pd_test))
    completed = check(case, pd_test, model.predict_complete(case, pd_test))
    before_fallback = np.isin(result.path, [PATHS.index("learned"), PATHS.index("repaired")])
    # the same model without its completion layer (the network's output straight into check / repair / fallback)
    plain = guaranteed_dispatch(case, pd_test, model.predict, exact)
    on_pandapower = check(case, pd_test[returned], result.dispatch[returned], flows="pandapower")
    return {
        "n_train": int(len(pd_train)),
        "n_test": int(len(pd_test)),
        "train_seconds": train_seconds,
        "n_infeasible_exact": int((status == "infeasible").sum()),
        "n_unsolved_exact": int(((status != "optimal") & (status != "infeasible")).sum()),
        "highs_warm_ms_median": float(np.median(seconds[feasible]) * 1e3),
        "highs_warm_total_s": highs_total,
        "learned_wall_s_runs": walls,
        "learned_wall_s": learned_wall,
        "learned_ms_per_scenario": learned_wall / len(pd_test) * 1e3,
        "speedup": highs_total / learned_wall,
        **gap_summary(gap),
        "paths": counts,
        "fallback_pct": counts["fallback"] / max(int(returned.sum()), 1) * 100,
        "n_feasible_exact": int(feasible.sum()),
        "feasible_frac": {
            "raw_network": _share(raw.ok, feasible),
            "as_produced_balance_and_gen_limits": _share(
                (completed.balance <= TOLERANCE_MW) & (completed.gen <= TOLERANCE_MW), feasible
            ),
            "as_produced": _share(result.path == PATHS.index("learned"), feasible),
            "before_fallback": _share(before_fallback, feasible),
            "after_fallback": _share(returned, feasible),
        },
        "violations": result.n_violations,
        "violations_pandapower": int((~on_pandapower.ok).sum()),
        "worst_line_excess_pandapower_mw": float(on_pandapower.line.max(initial=0.0)),
        "infeasible_agree": bool(((result.path == PATHS.index("infeasible")) == (status == "infeasible")).all()),
        "gap_pct_histogram": _histogram(gap * 100),
        "without_completion": {
            "paths": plain.counts(),
            "before_fallback_frac": _share(
                np.isin(plain.path, [PATHS.index("learned"), PATHS.index("repaired")]), feasible
            ),
            **gap_summary(_gaps(plain, cost_exact, feasible)),
        },
    }


def _gaps(result, optimal_cost: np.ndarray, feasible: np.ndarray) -> np.ndarray:
    """Optimality gaps (fractions) of what ``result`` returns on the scenarios HiGHS solves (``feasible [N]``)."""
    both = feasible & np.isfinite(result.cost)
    return optimality_gap(result.cost[both], optimal_cost[both])


def _share(passed: np.ndarray, feasible: np.ndarray) -> float:
    """The fraction of the scenarios HiGHS solves (``feasible [N]``) that pass (``passed [N]``)."""
    return float((passed & feasible).sum() / max(int(feasible.sum()), 1))


def _histogram(gap_pct: np.ndarray) -> dict[str, list]:
    """Counts of gaps (%) in log-spaced bins from 1e-6 % to 10 % (smaller gaps in the first bin)."""
    edges = np.logspace(-6, 1, 36)
    counts, _ = np.histogram(np.clip(gap_pct, edges[0], edges[-1]), bins=edges)
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def _outage_candidates(case, count: int) -> list[int]:
    """Branches carrying the most base-case flow relative to their limit whose loss islands nothing."""
    exact = WarmDCOPF(case)
    base = exact.solve(case.base_load)
    loading = np.abs(case.flows(base.dispatch, case.base_load)) / case.fmax
    out = []
    for branch in np.argsort(-loading):
        try:
            outaged = case.without_branch(int(branch))
            WarmDCOPF(outaged).solve(case.base_load)
        except Exception:  # islanding or an infeasible base case: not a usable regime
            continue
        out.append(int(branch))
        if len(out) == count:
            break
    return out


def regimes(case, profiles, types, outage, cfg, rng) -> list[RegimeData]:
    """One solved RegimeData per season x time of day of ``cfg`` on ``case`` with branch ``outage`` out (None: none)."""
    net = case if outage is None else case.without_branch(outage)
    exact = WarmDCOPF(net)
    data = []
    for season in cfg["seasons"]:
        for tod in cfg["times_of_day"]:
            pd = sample_loads(net, profiles, types, profiles.steps(season, tod), cfg["per_regime"], rng)
            pd, pg, cost, _ = _solved(exact, pd, progress=False)
            data.append(RegimeData(f"{net.name}/{season}/{tod}", pd, pg, cost))
    return data


def adaptation(case, profiles, types, cfg, rng) -> dict[str, Any]:
    """Part 2: source/target regimes, every method's gap on the targets, and the gated optimizer."""
    n_support, n_query = cfg["support"], cfg["query"]
    candidates = _outage_candidates(case, max(*cfg["target_outages"], cfg["validation_outage"]) + 1)
    source = [
        r
        for o in cfg["source_outages"]
        for r in regimes(case, profiles, types, None if o is None else candidates[o], cfg, rng)
    ]
    source = [r for r in source if len(r.pd) >= n_support + n_query]
    target, target_cases = [], []
    for o in cfg["target_outages"]:
        outaged = case.without_branch(candidates[o])
        kept = [r for r in regimes(case, profiles, types, candidates[o], cfg, rng) if len(r.pd) >= n_support + n_query]
        target += kept
        target_cases += [outaged] * len(kept)
    pooled_pd = np.concatenate([r.pd for r in source])
    pooled_pg = np.concatenate([r.pg for r in source])
    scalers = fit_scalers(pooled_pd, pooled_pg)
    n_load, n_gen = case.n_load, case.n_gen
    hidden = (128, 128)
    episode = regime_episode(target, scalers, n_support, n_query, np.random.default_rng(123))
    picks = episode.meta["index"][:, n_support:].numpy()
    query_pd = [r.pd[p] for r, p in zip(target, picks)]
    query_cost = [r.cost[p] for r, p in zip(target, picks)]

    exact = {c.name: WarmDCOPF(c) for c in target_cases}
    fallbacks: dict[str, int] = {}

    def gaps(pred: torch.Tensor, name: str) -> np.ndarray:
        """Gap (%) of what the guaranteed path returns for the completed predictions (check, repair,
        fallback): feasible, so >= 0."""
        out, fallback = [], 0
        for k in range(len(target)):
            net = target_cases[k]
            dispatch = complete(net, query_pd[k], in_mw(scalers[1], pred[k]), weight=scalers[1].scale_)
            result = guaranteed_dispatch(net, query_pd[k], lambda loads: dispatch, exact[net.name])
            fallback += result.counts()["fallback"]
            out.append(optimality_gap(result.cost, query_cost[k]) * 100)
        fallbacks[name] = fallback
        return np.concatenate(out)

    results: dict[str, Any] = {}
    validation = validation_tasks(case, profiles, types, scalers, candidates[cfg["validation_outage"]], cfg)
    chosen: dict[str, Choice] = {}
    guard_fallbacks: dict[str, int] = {}

    def tuned(name: str, method: Method[Any, torch.Tensor, torch.Tensor], candidates: list[Settings]) -> None:
        """Choose ``method``'s settings on the validation regimes, then adapt it to the targets and score it."""
        chosen[name] = choose_on_validation(method, candidates, validation, standardized_mse, name=f"energy {name}")
        method.adapt((episode.x_support, episode.y_support), **chosen[name].settings)
        results[name] = gaps(method.predict(episode.x_query), name)

    # single model on all source regimes
    pooled = make_network(n_load, n_gen, hidden, seed=0)
    fit_network(pooled, standardized(scalers[0], pooled_pd), standardized(scalers[1], pooled_pg), cfg["steps"])
    with torch.no_grad():
        results["pooled"] = gaps(torch.stack([pooled(episode.x_query[k]) for k in range(len(target))]), "pooled")
    tuned("pooled_finetune", RegimeFit(lambda k: copy.deepcopy(pooled)), FINETUNE_CANDIDATES)
    scratch_candidates = [
        {"steps": s, "lr": lr}
        for s in (cfg["scratch_steps"] // 8, cfg["scratch_steps"] // 4, cfg["scratch_steps"] // 2, cfg["scratch_steps"])
        for lr in (3e-4, 1e-3, 3e-3, 1e-2)
    ]
    tuned("scratch", RegimeFit(lambda k: make_network(n_load, n_gen, hidden, seed=k)), scratch_candidates)
    learners = {}
    for name in ("maml", "metasgd", "reptile"):
        # meta-training starts from the single model's weights (pretrain, then meta-train)
        learner = make_learner(name, copy.deepcopy(pooled), inner_steps=5, inner_lr=INNER_LR)
        _meta_train(learner, source, scalers, cfg, rng)
        method = AdaptedLearner(learner)
        tuned(name, method, META_CANDIDATES)
        guard_fallbacks[name] = method.fallbacks
        learners[name] = learner
    table = {name: dict(zip(("mean", "ci95"), mean_ci95(values))) for name, values in results.items()}
    best = min(("maml", "metasgd", "reptile"), key=lambda n: table[n]["mean"])
    gated = gated_comparison(pooled, learners["metasgd"], source, episode, scalers, cfg, rng)
    return {
        "outage_candidates": candidates,
        "source_outages": [None if o is None else candidates[o] for o in cfg["source_outages"]],
        "target_outages": [candidates[o] for o in cfg["target_outages"]],
        "validation_outage": candidates[cfg["validation_outage"]],
        "n_source_regimes": len(source),
        "n_target_regimes": len(target),
        "gap_pct": table,
        "adaptation_chosen_on_val": {name: choice.to_json() for name, choice in chosen.items()},
        "best_meta": best,
        "n_query": len(target) * n_query,
        "fallbacks": fallbacks,
        "adaptation_guard_fallbacks": guard_fallbacks,
        "ratio_vs_scratch": table[best]["mean"] / table["scratch"]["mean"],
        "gated": gated,
    }


def validation_tasks(
    case, profiles, types, scalers: tuple[Standardizer, Standardizer], outage: int, cfg
) -> list[ValidationTask]:
    """Solved scenarios of the regimes with branch ``outage`` out, to choose adaptation settings on.

    Every target regime has a branch out that meta-training never saw; so has this one (neither a source nor
    a target outage), which makes it the closest proxy for the targets that never touches them. Drawn from
    their own seed, so the other draws of the benchmark are those it makes without them.
    """
    rng = np.random.default_rng(VALIDATION_SEED)
    kept = [r for r in regimes(case, profiles, types, outage, cfg, rng) if len(r.pd) >= cfg["support"] + cfg["query"]]
    episode = regime_episode(kept, scalers, cfg["support"], cfg["query"], rng)
    return [ValidationTask((episode.x_support, episode.y_support), episode.x_query, episode.y_query)]


def _meta_train(
    learner, source: list[RegimeData], scalers: tuple[Standardizer, Standardizer], cfg, rng, meta_batch: int = 8
) -> None:
    """Meta-train on random batches of source regimes drawn with the benchmark's ``rng`` (no run folder)."""
    optimizer = torch.optim.Adam([p for p in learner.parameters() if p.requires_grad], lr=1e-3)

    def step(index: int) -> float:
        chosen = [source[i] for i in rng.choice(len(source), size=min(meta_batch, len(source)), replace=False)]
        episode = regime_episode(chosen, scalers, cfg["support"], cfg["query"], rng)
        optimizer.zero_grad()
        loss = learner.meta_backward(episode)
        optimizer.step()
        return loss

    Trainer(learner, optimizer, steps=cfg["meta_steps"], desc="meta-train").run(step)


def gated_comparison(pooled, metasgd, source, episode, scalers, cfg, rng) -> dict[str, Any]:
    """Query-loss curves over ADAPT_STEPS steps on the target regimes; steps to Adam's half-way loss."""
    with seeded(0):  # the gate network's initial weights
        gated = GatedOptimizer(copy.deepcopy(pooled), base="adam", lr=1e-3, inner_steps=10)
    for p in gated.model.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.Adam(gated.gate.parameters(), lr=3e-3)

    def step(index: int) -> float:
        chosen = [source[i] for i in rng.choice(len(source), size=4, replace=False)]
        optimizer.zero_grad()
        loss = gated.meta_loss(regime_episode(chosen, scalers, cfg["support"], cfg["query"], rng))
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    Trainer(gated.gate, optimizer, steps=cfg["gated_steps"], desc="gate").run(step)
    sgd = GatedOptimizer(copy.deepcopy(pooled), base="sgd", lr=0.05)
    curves = {"adam": [], "gated_adam": [], "sgd": [], "metasgd": []}
    for k in range(episode.n_tasks):
        xs, ys, xq, yq = episode.x_support[k], episode.y_support[k], episode.x_query[k], episode.y_query[k]
        init = gated.init_params(True)
        curves["adam"].append(
            gated.unroll(init, xs, ys, None, ADAPT_STEPS, keep_graph=False, gated=False, x_eval=xq, y_eval=yq)[1]
        )
        curves["gated_adam"].append(
            gated.unroll(init, xs, ys, None, ADAPT_STEPS, keep_graph=False, x_eval=xq, y_eval=yq)[1]
        )
        curves["sgd"].append(
            sgd.unroll(init, xs, ys, None, ADAPT_STEPS, keep_graph=False, gated=False, x_eval=xq, y_eval=yq)[1]
        )
        curve = []
        for steps in range(0, ADAPT_STEPS + 1, 5):
            with torch.no_grad():
                pred = metasgd.adapt(xs[None], ys[None], options=AdaptOptions(steps=steps)).predict(xq[None])[0]
            curve.append(float(((pred - yq) ** 2).mean()))
        curves["metasgd"].append(curve)
    mean = {k: np.mean(np.array(v), 0).tolist() for k, v in curves.items()}
    target = mean["adam"][ADAPT_STEPS // 2]

    def steps_to(curve: list[float], every: int = 1) -> float:
        hit = [i * every for i, value in enumerate(curve) if value <= target]
        return float(hit[0]) if hit else float("inf")

    steps = {
        "adam": steps_to(mean["adam"]),
        "gated_adam": steps_to(mean["gated_adam"]),
        "sgd": steps_to(mean["sgd"]),
        "metasgd": steps_to(mean["metasgd"], 5),
    }
    return {
        "target_loss": target,
        "steps_to_target": steps,
        "curves": mean,
        "final_loss": {k: v[-1] for k, v in mean.items()},
        "ratio_vs_adam": steps["gated_adam"] / max(steps["adam"], 1.0),
    }


def transport(cfg, rng) -> list[dict[str, Any]]:
    """Part 3: exact solvers against batched Sinkhorn + rounding, per size."""
    rows = []
    for n, m in ((3, 2), (10, 20), (50, 200)):
        problems = random_problems(n, m, cfg["transport"], rng)

        def timed(fn) -> tuple[float, list]:
            out, times = [], []
            for p in problems:
                started = time.perf_counter()
                out.append(fn(p))
                times.append(time.perf_counter() - started)
            return statistics.median(times) * 1e3, out

        emd_ms, emd = timed(solve_emd)
        highs_ms, highs = timed(solve_highs)
        optimum = np.array([p.total_cost(x) for p, x in zip(problems, emd)])
        single_ms, single = timed(lambda p: round_to_feasible(p, sinkhorn_plans([p])[0].numpy()))
        started = time.perf_counter()
        batch = [round_to_feasible(p, x) for p, x in zip(problems, sinkhorn_plans(problems).numpy())]
        batched_ms = (time.perf_counter() - started) / len(problems) * 1e3
        rows.append(
            {
                "size": f"{n}x{m}",
                "emd_ms": emd_ms,
                "highs_ms": highs_ms,
                "sinkhorn_single_ms": single_ms,
                "sinkhorn_batched_ms": batched_ms,
                "highs_vs_emd_max_rel": float(
                    np.max(np.abs([p.total_cost(x) for p, x in zip(problems, highs)] - optimum) / optimum)
                ),
                "sinkhorn_gap_pct": float(
                    np.mean([(p.total_cost(x) - o) / o * 100 for p, x, o in zip(problems, batch, optimum)])
                ),
                "max_violation": float(max(p.violation(x) for p, x in zip(problems, batch + single))),
                "speedup_batched_vs_emd": emd_ms / batched_ms,
            }
        )
    return rows


def run(quick: bool, json_path: Path) -> dict[str, Any]:
    torch.set_num_threads(1)
    cfg = QUICK if quick else FULL
    rng = np.random.default_rng(0)
    runs = runs_folder(json_path, quick)
    profiles = load_profiles(runs / "profiles.npz")
    case = load_case("case118", line_limits="base")
    types = assign_types(case, profiles, seed=0)
    started = time.perf_counter()
    print("energy: 1/3 throughput on case118", flush=True)
    # a finished throughput part is kept (it takes minutes): a stopped benchmark resumes after it
    done = runs / "throughput.json"
    settings = {
        "case": case.name,
        "network": NETWORK_MODEL,
        "learned_path": LEARNED_PATH,
        "seed": 0,
        **{k: cfg[k] for k in THROUGHPUT_SETTINGS},
    }
    dcopf = load_cached(done, settings)
    if dcopf is None:
        dcopf = save_cached(done, settings, throughput(case, profiles, types, cfg, rng))
    rng = np.random.default_rng(1)
    print(f"energy: 2/3 regimes and adaptation ({time.perf_counter() - started:.0f} s)", flush=True)
    adapt = adaptation(case, profiles, types, cfg, rng)
    print(f"energy: 3/3 transportation ({time.perf_counter() - started:.0f} s)", flush=True)
    trans = transport(cfg, rng)
    big = trans[-1]
    headline = {
        "dcopf118_speedup_vs_highs_warm": dcopf["speedup"],
        "dcopf118_mean_gap_pct": dcopf["gap_pct_mean"],
        "dcopf118_p99_gap_pct": dcopf["gap_pct_p99"],
        "dcopf118_max_gap_pct": dcopf["gap_pct_max"],
        "dcopf118_violations": dcopf["violations"],
        "dcopf118_violations_pandapower": dcopf["violations_pandapower"],
        "dcopf118_fallback_pct": dcopf["fallback_pct"],
        "dcopf118_feasible_as_produced_frac": dcopf["feasible_frac"]["as_produced"],
        "dcopf118_feasible_before_fallback_frac": dcopf["feasible_frac"]["before_fallback"],
        "adapt50_gap_ratio_vs_scratch": adapt["ratio_vs_scratch"],
        "transport_speedup_vs_emd": big["speedup_batched_vs_emd"],
        "gated_steps_ratio_vs_adam": adapt["gated"]["ratio_vs_adam"],
    }
    goals = {
        "dcopf118_speedup_ge_10": headline["dcopf118_speedup_vs_highs_warm"] >= 10,
        "dcopf118_gap_le_0.1pct": headline["dcopf118_mean_gap_pct"] <= 0.1,
        "dcopf118_p99_gap_le_0.5pct": headline["dcopf118_p99_gap_pct"] <= 0.5,
        "dcopf118_zero_violations": headline["dcopf118_violations"] == 0,
        "dcopf118_zero_violations_pandapower": headline["dcopf118_violations_pandapower"] == 0,
        "dcopf118_feasible_before_fallback_ge_0.9": headline["dcopf118_feasible_before_fallback_frac"] >= 0.9,
        "adapt50_ratio_le_0.5": headline["adapt50_gap_ratio_vs_scratch"] <= 0.5,
        "transport_learned_beats_emd": headline["transport_speedup_vs_emd"] > 1,
    }
    payload = {
        "benchmark": "energy",
        "quick": quick,
        "headline": headline,
        "goals_met": goals,
        "dcopf118": dcopf,
        "adaptation": adapt,
        "transport": trans,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
        "wall_seconds": time.perf_counter() - started,
        "machine": machine(),
        "notes": (
            f"case118, line limits max(1.1|f_base|, 0.1 max|f_base|); simbench 1-HV-mixed 2016 load profiles; "
            f"dispatch MLP {cfg['hidden']} trained {cfg['steps']} Adam steps on {cfg['train']} scenarios; "
            f"meta-learners start from the single model's weights, then {cfg['meta_steps']} meta-steps (Adam 1e-3, 8 regimes, "
            f"5 inner SGD steps of {INNER_LR}, MLP 128x128); "
            f"gated optimizer {cfg['gated_steps']} meta-steps (4 regimes, 10 unrolled Adam steps); "
            f"scratch: full-batch Adam on the {cfg['support']}; adaptation steps (and rates) of every method "
            "chosen on validation regimes with a third branch out, neither source nor target "
            "(adaptation_chosen_on_val). One CPU thread."
        ),
    }
    write_json(json_path, payload)
    _plot(payload, json_path.with_suffix(".png"))
    print(format_table(["key", "value"], [[k, v] for k, v in headline.items()]))
    gaps = ResultTable(("gap % mean",))
    for name, gap in adapt["gap_pct"].items():
        gaps.add(name, {"gap % mean": gap["mean"]}, ci95={"gap % mean": gap["ci95"]})
    print(gaps.to_text())
    print(format_table(list(trans[0]), [list(r.values()) for r in trans]))
    return payload


def _plot(payload: dict[str, Any], path: Path) -> None:
    plt = pyplot()

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    histogram = payload["dcopf118"]["gap_pct_histogram"]
    edges = np.array(histogram["edges"])
    axes[0].bar(edges[:-1], histogram["counts"], width=np.diff(edges), align="edge")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("optimality gap (%)")
    paths = payload["dcopf118"]["paths"]
    axes[0].set_title(
        f"case118, {payload['dcopf118']['n_test']} scenarios\n" + ", ".join(f"{k} {v}" for k, v in paths.items()),
        fontsize=9,
    )
    table = payload["adaptation"]["gap_pct"]
    names = list(table)
    axes[1].bar(names, [table[n]["mean"] for n in names], yerr=[table[n]["ci95"] or 0 for n in names])
    axes[1].set_yscale("log")
    axes[1].set_ylabel("gap of the returned dispatch (%)")
    axes[1].set_title("new regime from 50 scenarios")
    axes[1].tick_params(axis="x", rotation=30)
    for name, curve in payload["adaptation"]["gated"]["curves"].items():
        every = 5 if name == "metasgd" else 1
        axes[2].plot(np.arange(len(curve)) * every, curve, label=name)
    axes[2].axhline(payload["adaptation"]["gated"]["target_loss"], color="grey", ls=":")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("adaptation step")
    axes[2].set_ylabel("query MSE (standardized)")
    axes[2].legend()
    fig.tight_layout()
    save_png(fig, path, dpi=110)
