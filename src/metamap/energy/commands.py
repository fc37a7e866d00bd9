"""``metamap energy solve | train | adapt | transport``: DC-OPF dispatch with guaranteed feasibility, and transport.

Loads files (``--loads``, ``.csv`` or ``.parquet``) hold one row per scenario
and either one column per load of the case, named ``load_0 .. load_<n-1>``
in the order of pandapower's ``net.load`` table, in MW, or a single column
``multiplier`` that scales the case's own loads. Other columns (a time stamp)
are ignored.

``--case`` names a network of ``pandapower.networks`` (``case14``,
``case_illinois200``, ``case2869pegase``, ...) or a network file (pandapower
JSON, MATPOWER ``.mat``); ``--line-limits case`` (the default) keeps the
case's own branch ratings, ``base`` derives them from the base case (see
:mod:`metamap.energy.dcopf`). ``--time-limit`` bounds each HiGHS run.

- ``solve --case C --loads F --out D [--model RUN]``: every scenario through
  check / repair / fallback (without ``--model`` all are solved exactly by
  HiGHS and reported as ``fallback``); writes ``D/dispatch.csv`` (``gen_<k>``
  columns, MW), ``D/scenarios.csv`` (cost EUR/h, path, worst balance /
  generator / line violation in MW) and ``D/summary.json`` (path counts, and
  how many scenarios are feasible as the network gives them, as the model
  produces them after its completion layer, after the cheap correction and
  after the exact fallback).
  Scenarios HiGHS proves infeasible get path ``infeasible``, those it cannot
  answer (time limit, numerical failure after retries) ``unsolved``; both
  get empty values.
- ``train --case C --out RUN [--loads F | --scenarios N] [--holdout 0.1]``:
  solve the scenarios exactly (a loads file, or N draws from simbench's 2016
  profiles) and fit the dispatch model on all but the held-out share;
  ``RUN`` holds ``model.safetensors`` + ``model.json``, whose ``held_out``
  reports the model on the held-out scenarios (feasible counts per stage,
  mean / p99 / worst gap).
- ``adapt --run RUN --loads F --out RUN2``: fine-tune a trained model on the
  (at most 50) solved scenarios of a new regime; writes a new run.
- ``transport --costs C --supply S --demand D --out PLAN.csv [--method emd|highs]``:
  the cheapest plan that meets every demand from the supplies (see
  :mod:`metamap.energy.transport`), solved exactly. ``C`` is a CSV matrix of
  costs per unit: a header row naming the supply points (its first cell is
  free), then one row per demand point, its name first. ``S`` and ``D`` are
  CSVs of two columns, name and amount (>= 0, in the units the costs are
  per), with an optional header row; their names must be those of ``C``'s
  columns and rows (in any order). Writes the plan as ``demand,supply,amount``
  rows (amounts > 0 only) and ``PLAN.json`` beside it (total cost, method,
  status, solve seconds).
"""

from __future__ import annotations

import argparse
import json
import re
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from metamap.arguments import (
    add_device_flag,
    add_out_flag,
    add_run_folder_flags,
    add_seed_flag,
    add_steps_flag,
    nonnegative_float,
    output_file,
    positive_float,
    positive_int,
    writable_output_folder,
)
from metamap.errors import ConfigError, DataError

if TYPE_CHECKING:  # numpy is imported inside the handlers: building the parser stays light
    import numpy as np

MAX_ADAPT = 50
SOLVE_OUTPUTS = ("dispatch.csv", "scenarios.csv", "summary.json")
RUN_FILES = ("model.safetensors", "model.json")  # what train and adapt write into --out
TRANSPORT_METHODS = ("emd", "highs")


def add_energy_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``metamap energy {solve,train,adapt,transport}``."""
    energy = subparsers.add_parser(
        "energy", help="DC-OPF dispatch with guaranteed feasibility (solve | train | adapt), transport"
    )
    commands = energy.add_subparsers(dest="energy_command", required=True)

    solve = commands.add_parser("solve", help="dispatch every scenario of a loads file; writes CSV + JSON")
    _add_case_flags(solve, line_limits_default=None)
    solve.add_argument("--loads", type=Path, required=True, help="scenarios: .csv | .parquet (see docs)")
    add_out_flag(solve, "folder", "dispatch.csv, scenarios.csv, summary.json")
    solve.add_argument("--model", type=Path, default=None, help="run folder of metamap energy train|adapt")
    add_device_flag(solve)
    solve.set_defaults(handler=_solve)

    train = commands.add_parser("train", help="solve scenarios exactly and fit the dispatch model")
    _add_case_flags(train, line_limits_default="case")
    train.add_argument("--loads", type=Path, default=None, help="training scenarios (default: simbench profiles)")
    train.add_argument("--scenarios", type=positive_int, default=2000, help="draws from simbench without --loads")
    add_out_flag(train, "run", "model.safetensors, model.json")
    add_steps_flag(train, "Adam", default=3000)
    train.add_argument(
        "--holdout",
        type=_fraction,
        default=0.1,
        help="share of the solved scenarios kept out of training to report the model on: feasible as produced, "
        "after correction, after fallback, mean / p99 / worst gap (default: 0.1; 0: none)",
    )
    train.add_argument("--hidden", type=positive_int, nargs="+", default=[256, 256])
    add_seed_flag(train)
    add_run_folder_flags(train, resumable=False)
    add_device_flag(train)
    train.set_defaults(handler=_train)

    adapt = commands.add_parser("adapt", help="fine-tune a trained model on <= 50 scenarios of a new regime")
    adapt.add_argument("--run", type=Path, required=True, help="run folder of metamap energy train")
    adapt.add_argument("--loads", type=Path, required=True, help=f"at most {MAX_ADAPT} scenarios of the new regime")
    add_out_flag(adapt, "run", "the adapted model (a new folder, not --run)")
    unset = "chosen with --lr on held-out scenarios of the new regime"
    add_steps_flag(adapt, "Adam", default=None, unset=unset)
    adapt.add_argument("--lr", type=positive_float, default=None, help=f"Adam learning rate (default: {unset})")
    _add_time_limit_flag(adapt)
    add_run_folder_flags(adapt, resumable=False)
    add_device_flag(adapt)
    adapt.set_defaults(handler=_adapt)

    transport = commands.add_parser("transport", help="the cheapest plan from supply to demand points; CSV + JSON")
    transport.add_argument(
        "--costs",
        type=Path,
        required=True,
        help="CSV of costs per unit: a header naming the supply points, then one row per demand point (name first)",
    )
    transport.add_argument("--supply", type=Path, required=True, help="CSV of two columns: supply point, amount")
    transport.add_argument("--demand", type=Path, required=True, help="CSV of two columns: demand point, amount")
    transport.add_argument(
        "--method",
        choices=tuple(TRANSPORT_METHODS),
        default="emd",
        help="emd: network simplex (POT's ot.emd), exact and the fastest measured; highs: the same LP by HiGHS, "
        "exact, 7-23x slower (a cross-check). No approximate method is offered: batched Sinkhorn + rounding "
        "measured 12x slower than emd and 5.8%% above the optimum on 50x200 instances (BENCHMARKS.md, energy)",
    )
    add_out_flag(transport, "file", "the plan, .csv (demand,supply,amount), and its summary beside it (.json)")
    transport.set_defaults(handler=_transport)


def _add_case_flags(parser: argparse.ArgumentParser, line_limits_default: str | None) -> None:
    parser.add_argument(
        "--case",
        default="case118",
        help="a network of pandapower.networks (case14 .. case2869pegase) or a file: pandapower .json | MATPOWER .mat",
    )
    unset = " (default: the model's, else case)" if line_limits_default is None else " (default: case)"
    parser.add_argument(
        "--line-limits",
        choices=("case", "base"),
        default=line_limits_default,
        help="case: the case's own branch ratings; base: max(1.1 |f|, 0.1 max |f|) of the base-case "
        "dispatch without limits" + unset,
    )
    _add_time_limit_flag(parser)


def _fraction(text: str) -> float:
    """A number in [0, 1)."""
    value = nonnegative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def _add_time_limit_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--time-limit",
        type=positive_float,
        default=None,
        help="seconds per HiGHS run before it counts as failed and is retried (default: 10)",
    )


def read_loads(path: Path, case) -> np.ndarray:
    """Scenarios ``[N, n_load]`` MW from a loads file (layout in the module doc); DataError if unusable."""
    import numpy as np
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise DataError(f"loads file {path} does not exist")
    if path.suffix not in (".csv", ".parquet"):
        raise DataError(f"loads file {path}: expected a .csv or .parquet file, got {path.suffix or 'no suffix'!r}")
    try:
        table = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # parser errors and undecodable bytes are ValueErrors
        raise DataError(f"loads file {path} cannot be read as {path.suffix} ({type(exc).__name__}: {exc})") from None
    if len(table) == 0:
        raise DataError(f"loads file {path} has no rows")
    columns = [f"load_{i}" for i in range(case.n_load)]
    in_file = [c for c in map(str, table.columns) if re.fullmatch(r"load_\d+", c)]
    if in_file and set(in_file) != set(columns):
        raise DataError(
            f"loads file {path} has {len(in_file)} load columns, but {case.name} has {case.n_load} loads "
            f"(load_0..load_{case.n_load - 1}); was it written for another case?"
        )
    if "multiplier" in table.columns:
        values = _numeric(table[["multiplier"]], path).to_numpy(dtype=np.float64) * case.base_load
    elif set(columns) <= set(table.columns):
        values = _numeric(table[columns], path).to_numpy(dtype=np.float64)
    else:
        missing = [c for c in columns if c not in table.columns]
        raise DataError(
            f"loads file {path}: expected columns load_0..load_{case.n_load - 1} (MW, one per load of "
            f"{case.name}) or a 'multiplier' column; missing {missing[:5]}{' ...' if len(missing) > 5 else ''}"
        )
    return case.check_loads(values, what=f"loads file {path}", allow_infeasible=True)


def _numeric(table, path: Path):
    import pandas as pd

    try:
        return table.apply(pd.to_numeric)
    except (ValueError, TypeError) as exc:
        raise DataError(f"loads file {path}: values must be numbers ({exc})") from None


def _solve(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    from metamap.energy.dcopf import load_case
    from metamap.energy.feasibility import PATHS, check, feasible_counts, guaranteed_dispatch, returned_paths
    from metamap.energy.highs import WarmDCOPF
    from metamap.energy.learned import DispatchModel
    from metamap.report import write_json
    from metamap.training.distributed import pick_device

    writable_output_folder(args.out)
    device = pick_device(args.device)
    for name in SOLVE_OUTPUTS:
        output_file(args.out / name, inputs=[args.loads])
    model, limits = None, args.line_limits or "case"
    if args.model is not None:
        model, info = DispatchModel.load(args.model, device)
        if info.get("case") != args.case:
            raise ConfigError(f"{args.model} was trained on {info.get('case')!r}, not on {args.case!r}")
        trained = _line_limits_of(info)
        if args.line_limits not in (None, trained):
            raise ConfigError(f"{args.model} was trained with --line-limits {trained}, not {args.line_limits}")
        limits = trained
    case = load_case(args.case, line_limits=limits, time_limit=args.time_limit)
    pd_ = read_loads(args.loads, case)
    predict = None if model is None else partial(model.predict_complete, case)
    result = guaranteed_dispatch(case, pd_, predict, WarmDCOPF(case, time_limit=args.time_limit))
    returned = returned_paths(result.path)
    if not returned.any():
        raise DataError(
            f"none of the {len(pd_)} scenarios of {args.loads} has a feasible dispatch on {case.name}; "
            "check that the loads (MW) belong to this case"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(result.dispatch, columns=[f"gen_{k}" for k in range(case.n_gen)]).to_csv(
        args.out / "dispatch.csv", index_label="scenario"
    )
    violations = result.violations
    table = pd.DataFrame(
        {
            "cost": result.cost,
            "path": np.array(PATHS)[result.path],
            "balance_violation_mw": np.where(returned, violations.balance, np.nan),
            "gen_violation_mw": np.where(returned, violations.gen, np.nan),
            "line_violation_mw": np.where(returned, violations.line, np.nan),
        }
    )
    table.to_csv(args.out / "scenarios.csv", index_label="scenario")
    summary = {
        "case": args.case,
        "line_limits": limits,
        "scenarios": int(len(pd_)),
        "paths": result.counts(),
        "feasible": feasible_counts(result, None if model is None else check(case, pd_, model.predict(pd_))),
        "violations_returned": result.n_violations,
        "mean_cost": float(np.nanmean(result.cost)),
    }
    write_json(args.out / "summary.json", summary)
    print(json.dumps(summary))
    return 0


def _line_limits_of(info: dict) -> str:
    """The line limits a run was trained with (runs written before the flag existed used ``base``)."""
    return str(info.get("line_limits", "base"))


def _solved(case, pd_, time_limit: float | None):
    """The scenarios of ``pd_`` HiGHS solves, with their dispatch; says how many it dropped and why."""
    import sys

    import numpy as np

    from metamap.energy.highs import WarmDCOPF

    pg, _, _, status = WarmDCOPF(case, time_limit=time_limit).solve_many(pd_, progress=True)
    ok = status == "optimal"
    if ok.sum() == 0:
        raise DataError(
            f"none of the {len(pd_)} scenarios has an optimal dispatch on {case.name} "
            f"({', '.join(f'{s} {int((status == s).sum())}' for s in np.unique(status))})"
        )
    if not ok.all():
        dropped = ", ".join(f"{int((status == s).sum())} {s}" for s in np.unique(status[~ok]))
        print(f"dropped {int((~ok).sum())} of {len(pd_)} scenarios without an optimum: {dropped}", file=sys.stderr)
    return pd_[ok], pg[ok]


def _claim(args: argparse.Namespace, inputs: tuple[Path, ...] = ()):
    """Hold ``--out`` for this command: locked, and refused when it holds a run unless ``--overwrite``."""
    from metamap.training.run_folder import claim_run_folder

    return claim_run_folder(args.out, resume=False, overwrite=args.overwrite, outputs=RUN_FILES, inputs=inputs)


def _train(args: argparse.Namespace) -> int:
    with _claim(args):
        return _train_in_run(args)


def _train_in_run(args: argparse.Namespace) -> int:
    import numpy as np

    from metamap.energy.dcopf import load_case
    from metamap.energy.learned import train_dispatch
    from metamap.energy.scenarios import assign_types, load_profiles, sample_loads
    from metamap.training.distributed import pick_device

    writable_output_folder(args.out)
    device = pick_device(args.device)
    case = load_case(args.case, line_limits=args.line_limits, time_limit=args.time_limit)
    if args.loads is not None:
        pd_ = read_loads(args.loads, case)
    else:
        if args.scenarios < 2:
            raise ConfigError(f"--scenarios must be >= 2, got {args.scenarios}")
        profiles = load_profiles()
        steps = np.arange(profiles.values.shape[0])
        pd_ = sample_loads(
            case,
            profiles,
            assign_types(case, profiles, args.seed),
            steps,
            args.scenarios,
            np.random.default_rng(args.seed),
        )
    pd_, pg = _solved(case, pd_, args.time_limit)
    held = np.random.default_rng(args.seed).permutation(len(pd_))[: round(args.holdout * len(pd_))]
    fit = np.setdiff1d(np.arange(len(pd_)), held)
    if fit.size < 2:
        raise ConfigError(f"--holdout {args.holdout} leaves {fit.size} of {len(pd_)} solved scenarios to train on")
    model = train_dispatch(
        pd_[fit], pg[fit], hidden=tuple(args.hidden), steps=args.steps, seed=args.seed, device=device
    )
    report = held_out_report(case, model, pd_[held], case.cost(pg[held]), args.time_limit) if held.size else None
    info = {"case": args.case, "line_limits": args.line_limits, "scenarios": int(fit.size), "held_out": report}
    model.save(args.out, {**info, "steps": args.steps, "seed": args.seed})
    print(f"trained on {fit.size} solved scenarios of {args.case}; model in {args.out}")
    if report:
        print(f"held out: {json.dumps(report)}")
    return 0


def held_out_report(case, model, pd_: np.ndarray, optimal_cost: np.ndarray, time_limit: float | None) -> dict:
    """How ``model`` does on solved scenarios it was not trained on: ``pd_ [N, n_load]`` MW with their optimal
    costs ``[N]`` EUR/h. Feasible counts per stage (:func:`~metamap.energy.feasibility.feasible_counts`) and
    the mean, median, p99 and worst optimality gap (%) of what the guaranteed path returns."""
    import numpy as np

    from metamap.energy.feasibility import check, feasible_counts, gap_summary, guaranteed_dispatch, optimality_gap
    from metamap.energy.highs import WarmDCOPF

    result = guaranteed_dispatch(
        case, pd_, partial(model.predict_complete, case), WarmDCOPF(case, time_limit=time_limit)
    )
    answered = np.isfinite(result.cost)
    return {
        "scenarios": int(len(pd_)),
        "feasible": feasible_counts(result, check(case, pd_, model.predict(pd_))),
        **gap_summary(optimality_gap(result.cost[answered], optimal_cost[answered])),
    }


def _adapt(args: argparse.Namespace) -> int:
    with _claim(args, inputs=(args.run,)):
        return _adapt_in_run(args)


def _adapt_in_run(args: argparse.Namespace) -> int:
    from metamap.energy.dcopf import load_case
    from metamap.energy.learned import MIN_TO_CHOOSE, DispatchModel, choose_finetuning, fit_network, standardized
    from metamap.training.distributed import pick_device

    writable_output_folder(args.out)
    device = pick_device(args.device)
    if args.out.resolve() == args.run.resolve():
        raise ConfigError(f"--out {args.out} is the --run folder: adapting writes a new run; choose another --out")
    model, info = DispatchModel.load(args.run, device)
    case = load_case(info["case"], line_limits=_line_limits_of(info), time_limit=args.time_limit)
    pd_ = read_loads(args.loads, case)
    if len(pd_) > MAX_ADAPT:
        raise DataError(f"adapt takes at most {MAX_ADAPT} scenarios; {args.loads} has {len(pd_)}")
    pd_, pg = _solved(case, pd_, args.time_limit)
    if (args.steps is None) != (args.lr is None):
        raise ConfigError("pass both --steps and --lr, or neither (then both are chosen on held-out scenarios)")
    if args.steps is None and len(pd_) < MIN_TO_CHOOSE:
        raise DataError(
            f"{args.loads}: {len(pd_)} solved scenarios; choosing the fine-tuning settings needs at least "
            f"{MIN_TO_CHOOSE} (some are held out): pass --steps and --lr"
        )
    choice = None if args.steps is not None else choose_finetuning(model, pd_, pg)
    settings = choice.settings if choice else {"steps": args.steps, "lr": args.lr}
    x, y = standardized(model.loads_scaler, pd_), standardized(model.dispatch_scaler, pg)
    fit_network(model.network, x, y, settings["steps"], lr=settings["lr"], batch=len(pd_))
    model.save(
        args.out,
        {
            **{k: v for k, v in info.items() if k not in ("hidden", "n_load", "n_gen")},
            "adapted_on": str(args.loads),
            "adapt_steps": settings["steps"],
            "adapt_lr": settings["lr"],
            "adapt_chosen_on_holdout": choice.to_json() if choice else None,
        },
    )
    how = "chosen on held-out scenarios" if choice else "as given"
    print(
        f"adapted on {len(pd_)} solved scenarios: {settings['steps']} Adam steps at lr {settings['lr']:g} ({how}); "
        f"model in {args.out}"
    )
    return 0


def _transport(args: argparse.Namespace) -> int:
    import time

    import numpy as np
    import pandas as pd

    from metamap.energy.transport import solve_emd, solve_highs
    from metamap.report import atomic_write_bytes, write_json

    if args.out.suffix.lower() != ".csv":
        raise ConfigError(f"--out {args.out}: expected a .csv file name, got {args.out.suffix or 'no suffix'!r}")
    inputs = (args.costs, args.supply, args.demand)
    summary_path = args.out.with_suffix(".json")
    for path in (args.out, summary_path):
        output_file(path, inputs=inputs)
    problem, demand_names, supply_names = read_transport(args.costs, args.supply, args.demand)
    solve = {"emd": solve_emd, "highs": solve_highs}[args.method]
    started = time.perf_counter()
    plan = solve(problem)
    seconds = time.perf_counter() - started
    rows, columns = np.nonzero(plan > 0)
    table = pd.DataFrame(
        {
            "demand": np.array(demand_names, dtype=object)[rows],
            "supply": np.array(supply_names, dtype=object)[columns],
            "amount": plan[rows, columns],
        }
    )
    atomic_write_bytes(args.out, table.to_csv(index=False).encode())
    summary = {
        "method": args.method,
        "status": "optimal",
        "total_cost": problem.total_cost(plan),
        "seconds": seconds,
        "demand_points": len(demand_names),
        "supply_points": len(supply_names),
        "total_demand": float(problem.demand.sum()),
        "total_supply": float(problem.supply.sum()),
        "max_violation": problem.violation(plan),
        "plan_rows": len(table),
        "inputs": {"costs": str(args.costs), "supply": str(args.supply), "demand": str(args.demand)},
    }
    write_json(summary_path, summary)
    print(json.dumps(summary))
    return 0


def read_transport(costs: Path, supply: Path, demand: Path):
    """The transportation problem of three CSV files (layout in the module doc).

    Returns ``(problem, demand_names [n], supply_names [m])``: the problem's
    ``cost [n, m]`` rows and columns in the order of the costs file, the
    amounts matched to them by name. DataError names the file and what is
    wrong (a missing or unknown name, a non-finite cost, a negative amount);
    InfeasibleError when the total demand exceeds the total supply.
    """
    import numpy as np

    from metamap.energy.dcopf import InfeasibleError
    from metamap.energy.transport import TOLERANCE, TransportProblem

    cells = _csv_cells(costs, "costs")
    if cells.shape[0] < 2 or cells.shape[1] < 2:
        raise DataError(
            f"costs file {costs}: expected a header row of supply points and at least one row per demand point "
            f"(name first), got {cells.shape[0]} rows of {cells.shape[1]} columns"
        )
    supply_names, demand_names = (
        _names(cells[0, 1:], costs, "supply point"),
        _names(cells[1:, 0], costs, "demand point"),
    )
    values = _numbers(cells[1:, 1:])
    bad = np.argwhere(~np.isfinite(values))
    if bad.size:
        i, j = bad[0]
        raise DataError(
            f"costs file {costs}: the cost from {supply_names[j]!r} to {demand_names[i]!r} is {str(cells[1 + i, 1 + j])!r}; "
            f"expected a finite number ({len(bad)} such cells)"
        )
    supply_amount = _amounts(supply, "supply", supply_names, costs)
    demand_amount = _amounts(demand, "demand", demand_names, costs)
    if demand_amount.sum() > supply_amount.sum() * (1 + 1e-12) + TOLERANCE:
        raise InfeasibleError(
            f"infeasible: the total demand {demand_amount.sum():.6g} ({demand}) exceeds the total supply "
            f"{supply_amount.sum():.6g} ({supply}); expected total demand <= total supply"
        )
    return TransportProblem(values, demand_amount, supply_amount), demand_names, supply_names


def _csv_cells(path: Path, what: str) -> np.ndarray:
    """Every cell of a CSV file as stripped text ``[rows, columns]`` (no header taken); DataError if unreadable."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file {path} does not exist")
    try:
        table = pd.read_csv(path, header=None, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, ValueError) as exc:  # parser errors, ragged rows and undecodable bytes are ValueErrors
        raise DataError(f"{what} file {path} cannot be read as CSV ({type(exc).__name__}: {exc})") from None
    return table.to_numpy(dtype=str)


def _names(cells: np.ndarray, path: Path, what: str) -> list[str]:
    """Point names, each once and not empty; DataError naming the first offender."""
    names = [str(c).strip() for c in cells]
    if "" in names:
        raise DataError(f"{path}: {what} {names.index('') + 1} has an empty name; expected a name for each")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"{path}: the {what} {name!r} appears more than once; expected each name once")
        seen.add(name)
    return names


def _numbers(cells: np.ndarray) -> np.ndarray:
    """Text cells ``[...]`` as float64, NaN where a cell is not a number."""
    import numpy as np
    import pandas as pd

    flat = pd.to_numeric(pd.Series(cells.ravel()), errors="coerce")
    return flat.to_numpy(dtype=np.float64).reshape(cells.shape)


def _amounts(path: Path, what: str, expected: list[str], costs: Path) -> np.ndarray:
    """The amounts ``[len(expected)]`` of a two-column ``what`` file (name, amount), in the order of ``expected``.

    A first row whose name is none of ``expected`` and whose amount is not a number is a header.
    """
    import numpy as np

    known = set(expected)
    cells = _csv_cells(path, what)
    if cells.shape[1] != 2:
        raise DataError(f"{what} file {path}: expected two columns (name, amount), got {cells.shape[1]}")
    if cells.shape[0] and cells[0, 0].strip() not in known and not np.isfinite(_numbers(cells[:1, 1])).all():
        cells = cells[1:]
    names = _names(cells[:, 0], path, f"{what} point")
    amounts = _numbers(cells[:, 1])
    for name, text, value in zip(names, cells[:, 1], amounts, strict=True):
        if not np.isfinite(value) or value < 0:
            raise DataError(
                f"{what} file {path}: the amount of {name!r} is {str(text)!r}; expected a finite number >= 0"
            )
    where = "columns" if what == "supply" else "rows"
    row_of = {name: k for k, name in enumerate(names)}
    missing = [n for n in expected if n not in row_of]
    unknown = [n for n in names if n not in known]
    if missing:
        raise DataError(
            f"{what} file {path}: no amount for the {what} points {_first(missing)}, which are {where} of the "
            f"costs file {costs}; expected one row per {what} point"
        )
    if unknown:
        raise DataError(
            f"{what} file {path}: the {what} points {_first(unknown)} are not {where} of the costs file {costs} "
            f"(expected {_first(expected)})"
        )
    return amounts[[row_of[n] for n in expected]]


def _first(names: list[str], count: int = 5) -> str:
    """The first ``count`` names, quoted, with ``...`` when there are more."""
    return ", ".join(map(repr, names[:count])) + (f" ... ({len(names)} in all)" if len(names) > count else "")
