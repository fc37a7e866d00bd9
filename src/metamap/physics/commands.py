"""``metamap physics run | fit``: few-shot physical systems, and the least-squares fit of your observations.

- ``run``: the full comparison of :mod:`metamap.physics.experiment` on a
  chosen system (meta-learners, pretrain + fine-tune, from scratch, least
  squares); writes ``metrics.json`` and ``trajectories.png``.
- ``fit``: fit a system's known equation to your observations (CSV with
  columns ``t``, ``y``; Lotka-Volterra: ``t``, ``prey``, ``predator``; heat:
  ``t``, ``x``, ``u``), or your own ODE (``--rhs module:function --params
  name=lo:hi,...``, :mod:`metamap.physics.user_ode`) to your trajectories
  (CSV: ``t`` and the states); writes ``fit.json`` with the parameters and
  the residual RMS.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from metamap.arguments import (
    add_device_flag,
    add_out_flag,
    add_seed_flag,
    add_steps_flag,
    nonnegative_float,
    output_file,
    positive_int,
    writable_output_folder,
)

# numpy, torch and the models are imported inside the handlers: building the parser stays light.
SYSTEM_NAMES = "oscillator | pendulum | lotka_volterra | heat"
OBSERVED = {"oscillator": ("y",), "pendulum": ("y",), "lotka_volterra": ("prey", "predator"), "heat": ("u",)}


def add_physics_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``metamap physics {run,fit}``."""
    physics = subparsers.add_parser("physics", help="few-shot parametric physical systems (run | fit)")
    commands = physics.add_subparsers(dest="physics_command", required=True)

    run = commands.add_parser("run", help="few-shot trajectory prediction and parameter identification")
    run.add_argument("--system", required=True, help=SYSTEM_NAMES)
    add_out_flag(run, "folder", "metrics.json and trajectories.png")
    run.add_argument("--k-shot", type=positive_int, default=10, help="observations per new system")
    run.add_argument("--noise", type=nonnegative_float, default=0.05, help="observation noise std")
    add_steps_flag(run, "meta-training (per learner)", default=1000)
    run.add_argument("--test-tasks", type=positive_int, default=50, help="new systems scored")
    run.add_argument("--train-systems", type=positive_int, default=1000, help="systems in the meta-train bank")
    add_seed_flag(run)
    add_device_flag(run)
    run.set_defaults(handler=_run)

    fit = commands.add_parser("fit", help="least-squares fit of a built-in or your own equation to your observations")
    equation = fit.add_mutually_exclusive_group(required=True)
    equation.add_argument("--system", help=SYSTEM_NAMES)
    equation.add_argument("--rhs", help="your ODE: module:function or file.py:function, f(t, y, params) -> dy/dt")
    fit.add_argument("--params", help="with --rhs: the parameters and their ranges, name=lo:hi,...")
    fit.add_argument("--state-names", help="with --rhs: the state columns, a,b,... (default: every column but t)")
    fit.add_argument(
        "--data",
        type=Path,
        required=True,
        help="CSV: t,y (lotka_volterra: t,prey,predator; heat: t,x,u); with --rhs: t and the states",
    )
    add_out_flag(fit, "folder", "fit.json")
    fit.add_argument("--starts", type=positive_int, default=8, help="random starts of the fit")
    add_seed_flag(fit)
    fit.set_defaults(handler=_fit)


def _run(args: argparse.Namespace) -> int:
    from metamap.physics.experiment import run_system
    from metamap.physics.plots import trajectory_figure
    from metamap.physics.systems import get_system
    from metamap.report import write_json
    from metamap.training.distributed import pick_device

    writable_output_folder(args.out)
    device = pick_device(args.device)
    system = get_system(args.system)
    result = run_system(
        system,
        k_shot=args.k_shot,
        noise=args.noise,
        steps=args.steps,
        test_tasks=args.test_tasks,
        val_tasks=max(10, args.test_tasks // 2),
        head_tasks=max(50, 4 * args.test_tasks),
        n_systems=args.train_systems,
        seed=args.seed,
        device=device,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "metrics.json", {k: v for k, v in result.items() if k != "examples"})
    trajectory_figure({system.name: result}, args.out / "trajectories.png")
    for method, score in result["mse"].items():
        error = result["param_rel_error"].get(method)
        extra = f", parameter rel. error {error['mean']:.3f}" if error else ""
        print(f"{method}: MSE {score['mean']:.4g} ± {score['ci95']:.2g}{extra}")
    print(f"wrote {args.out / 'metrics.json'} and {args.out / 'trajectories.png'}")
    return 0


def _fit(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    from metamap.errors import ConfigError, DataError
    from metamap.physics.fit import least_squares_fit
    from metamap.physics.systems import get_system
    from metamap.report import write_json

    output_file(writable_output_folder(args.out) / "fit.json", inputs=[args.data])
    if args.rhs is not None:
        return _fit_user_ode(args)
    if args.params is not None or args.state_names is not None:
        raise ConfigError("--params and --state-names go with --rhs (a built-in --system knows its own)")
    system = get_system(args.system)
    if not args.data.is_file():
        raise DataError(f"observations file {args.data} not found")
    try:
        frame = pd.read_csv(args.data)
    except (OSError, ValueError) as exc:  # pandas' parser errors and undecodable bytes are ValueErrors
        raise DataError(f"{args.data}: expected a CSV table of observations ({type(exc).__name__}: {exc})") from None
    needed = ("t", *(("x",) if system.n_in == 2 else ()), *OBSERVED[system.name])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(
            f"{args.data}: {system.name} needs columns {list(needed)}; missing {missing}, got {list(frame.columns)}"
        )
    frame = frame[list(needed)].apply(pd.to_numeric, errors="coerce")
    if frame.isna().any().any() or len(frame) < len(system.names):
        raise DataError(f"{args.data}: expected >= {len(system.names)} rows of finite numbers in {list(needed)}")
    t = frame["t"].to_numpy()
    x = frame["x"].to_numpy() if system.n_in == 2 else None
    y = frame[list(OBSERVED[system.name])].to_numpy()
    params = least_squares_fit(system, t, y, x, n_starts=args.starts, seed=args.seed)
    rms = float(np.sqrt(np.mean((system.simulate(params, t, x) - y) ** 2)))
    result = {
        "system": system.name,
        "parameters": dict(zip(system.names, params.tolist())),
        "residual_rms": rms,
        "n_observations": len(frame),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "fit.json", result)
    print(", ".join(f"{n} = {v:.4g}" for n, v in result["parameters"].items()) + f" (residual RMS {rms:.3g})")
    print(f"wrote {args.out / 'fit.json'}")
    return 0


def _fit_user_ode(args: argparse.Namespace) -> int:
    import numpy as np

    from metamap.errors import ConfigError
    from metamap.physics.user_ode import UserODE, load_rhs, parse_ranges, read_trajectories
    from metamap.report import write_json

    if args.params is None:
        raise ConfigError("--rhs needs --params name=lo:hi,... naming the parameters to fit and their ranges")
    ranges = parse_ranges(args.params)
    state_names = None if args.state_names is None else [n.strip() for n in args.state_names.split(",")]
    t, states, names = read_trajectories(args.data, state_names)
    ode = UserODE(load_rhs(args.rhs), ranges, len(names))
    params, initial, evaluations = ode.fit(t, states, n_starts=args.starts, seed=args.seed)
    rms = float(np.sqrt(np.mean((ode.simulate(params, initial, t) - states) ** 2)))
    result = {
        "rhs": args.rhs,
        "parameters": dict(zip(ranges, params.tolist())),
        "ranges": {n: list(r) for n, r in ranges.items()},
        "initial_state": dict(zip(names, initial.tolist())),
        "residual_rms": rms,
        "n_observations": int(t.size),
        "function_evaluations": evaluations,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "fit.json", result)
    print(", ".join(f"{n} = {v:.4g}" for n, v in result["parameters"].items()) + f" (residual RMS {rms:.3g})")
    print(f"wrote {args.out / 'fit.json'}")
    return 0
