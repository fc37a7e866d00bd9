"""``metamap traffic train | adapt | evaluate | predict``: few-shot forecasting on anyone's detector files.

- ``train``: meta-train one method on every sensor of a file (10% held out to
  choose the adaptation settings); the run folder's checkpoint holds all that
  is needed to rebuild it: the experiment settings, the normalization, the
  graph hops, the data's step, and (under ``config["adaptation"]``, added once
  training has finished) the adaptation settings chosen on the held-out
  sensors.
- ``adapt``: a trained run adapts to every sensor of another file from its
  first K days and forecasts the rest, beside the baselines that need no
  training (persistence, seasonal naive by day and week, historical average by
  time of day and week).
- ``evaluate``: the full comparison of :mod:`metamap.traffic.experiment` on one
  file (P1, new sensors) or from one file to another (P2, new city).
- ``predict``: a trained run adapts to every sensor of a file on its last K
  days and forecasts the steps after the file's end, beside the simple
  baselines: ``.csv`` (one row per sensor and lead) or ``.nc`` (``forecast
  [sensor, lead]``), and a plot of the last days and the forecasts.

Outputs of ``adapt`` and ``evaluate`` in ``--out``: ``metrics.json``,
``predictions.npz`` (``truth [N, W, 12]`` in the file's unit, 0 = missing;
``origin_time [W]`` int64 ns since 1970; ``sensor_ids [N]``; ``methods``;
``prediction_<method> [N, W, 12]`` for the main target; ``adapt`` also writes
the adapted model's forecast as ``prediction``; ``evaluate`` P1 writes the
6-hour-support target as ``prediction_6h_<method>``), ``forecasts.png`` and
``error_by_horizon.png``.

Every data file is read on its own terms (:func:`~metamap.traffic.io.load_traffic`):
the time step from an ``.h5`` index or ``--step`` for a ``.npz``, local
wall-clock time of a time-zone-aware index, ``--missing-value`` codes and
``--zero-is-missing``/``--keep-zeros``; the zone and step go into the run.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metamap.arguments import (
    add_device_flag,
    add_missing_value_flags,
    add_out_flag,
    add_progress_flag,
    add_run_folder_flags,
    add_seed_flag,
    add_step_flag,
    add_steps_flag,
    duration_label,
    durations,
    nonnegative_int,
    output_file,
    positive_float,
    positive_int,
    steps_of,
    time_step,
    writable_output_folder,
)
from metamap.errors import CheckpointError, ConfigError, DataError

if TYPE_CHECKING:
    from metamap.traffic.data import TrafficData
    from metamap.traffic.experiment import ExperimentConfig, MethodResult
    from metamap.traffic.protocols import Setup

# numpy, torch and the models are imported inside the handlers: building the parser stays light.
PRETRAIN = "pretrain"
TRAINED_METHODS = ("maml", "fomaml", "reptile", "metasgd", "anil", PRETRAIN)
RUN_KIND = "traffic"
OUTPUTS = ("metrics.json", "predictions.npz", "forecasts.png", "error_by_horizon.png")  # of adapt and evaluate
PATTERN_OUTPUTS = ("patterns.json", "prototypes.png", "sensor_map.png")
INPUT_FLAGS = ("data", "adj", "locations", "target_data", "target_adj", "target_locations")


# --------------------------------------------------------------------------- parser


def add_traffic_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``metamap traffic {train,adapt,evaluate}``."""
    traffic = subparsers.add_parser(
        "traffic", help="few-shot traffic forecasting on your own detector files (train | adapt | evaluate)"
    )
    commands = traffic.add_subparsers(dest="traffic_command", required=True)

    train = commands.add_parser("train", help="meta-train on every sensor of a file; writes a run folder")
    _data_flags(train)
    _model_flags(train)
    add_out_flag(train, "run", "checkpoints, metrics")
    train.add_argument("--method", default="maml", help=" | ".join(TRAINED_METHODS))
    add_steps_flag(train, "meta-training", default=1000, allow_zero=True)
    train.add_argument(
        "--train-days",
        type=positive_int,
        default=None,
        help="train on the file's first N days (default: all whole days)",
    )
    train.add_argument("--inner-steps", type=nonnegative_int, default=5)
    train.add_argument("--inner-lr", type=positive_float, default=0.05)
    add_run_folder_flags(train)
    add_device_flag(train)
    add_progress_flag(train)
    train.set_defaults(handler=_train)

    adapt = commands.add_parser("adapt", help="adapt a trained run to every sensor of a file and forecast")
    adapt.add_argument("--run", type=Path, required=True, help="run folder written by metamap traffic train")
    _data_flags(adapt)
    add_out_flag(adapt, "folder", "metrics, predictions and plots")
    _support_flag(adapt, "the readings at the start of the file each sensor adapts on; the rest is forecast")
    add_steps_flag(
        adapt, "adaptation", default=None, allow_zero=True, unset="those chosen on the validation sensors at training"
    )
    add_device_flag(adapt)
    adapt.set_defaults(handler=_adapt)

    evaluate = commands.add_parser(
        "evaluate", help="compare every method: new sensors of one file (P1) or a new city (P2, --target-data)"
    )
    _data_flags(evaluate)
    _model_flags(evaluate)
    add_out_flag(evaluate, "folder", "metrics, predictions and plots")
    evaluate.add_argument(
        "--target-data",
        type=Path,
        default=None,
        help="the new city's readings (P2); without it, new sensors of --data (P1)",
    )
    evaluate.add_argument("--target-adj", type=Path, default=None, help="the new city's graph (.pkl | .csv)")
    evaluate.add_argument("--target-locations", type=Path, default=None)
    evaluate.add_argument("--target-key", default=None, help="HDF key of --target-data (default: --key)")
    evaluate.add_argument("--target-channel", default=None, help="npz channel of --target-data (default: --channel)")
    evaluate.add_argument("--target-start", default=None, help="npz: time of --target-data's first step")
    add_step_flag(evaluate, "--target-step", of="--target-data (default: --step)")
    evaluate.add_argument(
        "--train-days",
        type=positive_int,
        default=None,
        help="P1: training days (default: whole days - 2, or - 1 for a short file); "
        "P2: use the source's first N days (default all)",
    )
    add_steps_flag(evaluate, "meta-training", default=1000, allow_zero=True)
    evaluate.add_argument("--inner-steps", type=nonnegative_int, default=5)
    evaluate.add_argument("--inner-lr", type=positive_float, default=0.05)
    evaluate.add_argument(
        "--methods",
        default=None,
        help="comma-separated, e.g. maml,pretrain_finetune,persistence (default: all methods)",
    )
    add_device_flag(evaluate)
    add_progress_flag(evaluate)
    evaluate.set_defaults(handler=_evaluate)

    predict = commands.add_parser(
        "predict", help="forecast every sensor from the end of a file with a trained run (for a dashboard)"
    )
    predict.add_argument("--run", type=Path, required=True, help="run folder written by metamap traffic train")
    _data_flags(predict)
    add_out_flag(predict, "file", "forecasts.csv or forecasts.nc; a plot is written beside it (.png)")
    _support_flag(predict, "the readings at the end of the file the run adapts to each sensor on")
    add_steps_flag(
        predict, "adaptation", default=None, allow_zero=True, unset="those chosen on the validation sensors at training"
    )
    add_device_flag(predict)
    predict.set_defaults(handler=_predict)

    patterns = commands.add_parser(
        "patterns", help="learn daily traffic patterns on --data, assign the sensor-days of --target-data"
    )
    _data_flags(patterns)
    patterns.add_argument("--target-data", type=Path, required=True, help="the city whose sensor-days to sort")
    patterns.add_argument("--target-locations", type=Path, default=None, help="coordinates for the sensor map")
    patterns.add_argument("--target-key", default=None, help="HDF key of --target-data (default: --key)")
    patterns.add_argument("--target-channel", default=None, help="npz channel of --target-data (default: --channel)")
    patterns.add_argument("--target-start", default=None, help="npz: time of --target-data's first step")
    add_step_flag(patterns, "--target-step", of="--target-data (default: --step)")
    add_out_flag(patterns, "folder", "patterns.json and the plots")
    add_steps_flag(patterns, "ProtoNet meta-training", default=500)
    patterns.add_argument("--shots", type=positive_int, nargs="+", default=[1, 5], help="labelled days per pattern")
    patterns.add_argument(
        "--labels",
        choices=("auto", "rule", "clusters"),
        default="auto",
        help="weak pattern labels: the speed rule, k-means clusters of the source's daily profiles (k by "
        "silhouette), or auto: clusters for counts and flows (non-negative integers), the rule otherwise",
    )
    patterns.add_argument(
        "--bin", type=time_step, default=None, help="profile bin, e.g. 15min or 1h (default 15min, or the data's step)"
    )
    add_seed_flag(patterns)
    add_device_flag(patterns)
    patterns.set_defaults(handler=_patterns)


def _support_flag(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument(
        "--support",
        type=time_step,
        default=24 * 60,
        metavar="DURATION",
        help=f"{help}, e.g. 6h or 2d; a whole number of the data's steps (default 1d)",
    )


def _data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="readings: .h5 | .hdf5 (pandas) or .npz (PeMS)")
    parser.add_argument("--adj", type=Path, default=None, help="graph: DCRNN .pkl or from,to,cost .csv")
    parser.add_argument("--locations", type=Path, default=None, help="sensor_id,latitude,longitude CSV")
    parser.add_argument("--key", default="df", help="HDF key of the readings (.h5)")
    parser.add_argument("--channel", default="speed", help="npz channel: flow | occupancy | speed or an index")
    parser.add_argument("--start", default=None, help="npz: time of the first step (default 2018-01-01T00:00)")
    add_step_flag(parser)
    add_missing_value_flags(parser)
    parser.add_argument("--drop-silent", action="store_true", help="drop sensors that never report")
    parser.add_argument(
        "--units", default=None, help="the readings' unit for tables and plots (default: mph for speed, else none)"
    )


def _model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default=None, help="graph | node (default: graph with --adj, node without; graph needs --adj)"
    )
    parser.add_argument("--hidden", type=positive_int, nargs="+", default=None, help="hidden widths (default 64 64)")
    parser.add_argument("--meta-batch", type=positive_int, default=16, help="sensors per meta-step")
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="outer learning rate")
    parser.add_argument(
        "--history", type=time_step, default=None, help="readings each forecast sees, e.g. 1h (default 12 steps)"
    )
    parser.add_argument(
        "--horizons",
        type=durations,
        default=None,
        help="reported horizons, e.g. 15min,30min,1h; the longest is forecast at every step (default 3,6,12 steps)",
    )
    _support_flag(
        parser,
        "the readings each sensor adapts on: the support block of every meta-training task, "
        "and the targets' support in evaluate",
    )
    parser.add_argument(
        "--base",
        default="auto",
        help="the classical forecast the networks correct: auto (the best on the validation sensors) | "
        "persistence | seasonal_naive_day | seasonal_naive_week | seasonal_naive_daytype | profile_day | "
        "profile_week | none",
    )
    parser.add_argument(
        "--no-seasonal",
        dest="seasonal",
        action="store_false",
        help="leave the readings a day and a week before each target out of the inputs",
    )
    parser.add_argument(
        "--profile-inputs",
        dest="profiles",
        action="store_true",
        help="add each sensor's mean reading at the target's time of day (last 7 days) and time of week (last 4 "
        "weeks) to the inputs; worth trying with weeks of training readings",
    )
    negative = parser.add_mutually_exclusive_group()
    negative.add_argument(
        "--nonnegative",
        dest="nonnegative",
        action="store_true",
        default=None,
        help="clip forecasts at 0 (default: on when every reading is a non-negative integer, i.e. counts)",
    )
    negative.add_argument("--allow-negative", dest="nonnegative", action="store_false", help="never clip forecasts")
    add_seed_flag(parser)


# --------------------------------------------------------------------------- helpers


def _channel(text: str) -> str | int:
    return int(text) if text.strip().lstrip("-").isdigit() else text


def _load(
    path: Path,
    adj: Path | None,
    locations: Path | None,
    args: argparse.Namespace,
    *,
    key: str,
    channel: str,
    start: str | None,
    step: int | None,
):
    """:func:`~metamap.traffic.io.load_traffic` with the missing-value and ``--drop-silent`` flags of ``args``."""
    from metamap.traffic.io import load_traffic

    return load_traffic(
        path,
        adj,
        locations,
        key=key,
        channel=_channel(channel),
        start=start,
        step_minutes=step,
        missing_values=tuple(args.missing_value),
        zero_is_missing=args.zero_is_missing,
        drop_silent=args.drop_silent,
    )


def _load_source(args: argparse.Namespace):
    return _load(
        args.data, args.adj, args.locations, args, key=args.key, channel=args.channel, start=args.start, step=args.step
    )


def _load_target(args: argparse.Namespace, adj: Path | None):
    """``--target-data`` (with graph ``adj``), its key, channel and step defaulting to those of ``--data``."""
    return _load(
        args.target_data,
        adj,
        args.target_locations,
        args,
        key=args.target_key or args.key,
        channel=args.target_channel or args.channel,
        start=args.target_start,
        step=args.step if args.target_step is None else args.target_step,
    )


def _experiment(args: argparse.Namespace, data: TrafficData, methods: tuple[str, ...]):
    """The experiment settings of the flags, the window lengths converted to ``data``'s steps."""
    from metamap.traffic.experiment import ExperimentConfig
    from metamap.traffic.features import Windows

    model = args.model or ("graph" if data.adjacency is not None else "node")
    windows = Windows.from_minutes(data.step_minutes, args.history, args.horizons)
    options: dict[str, Any] = dict(
        history=windows.history,
        horizons=windows.horizons,
        seasonal=args.seasonal,
        profiles=args.profiles,
        base=None if args.base == "none" else args.base,
        nonnegative=data.holds_counts if args.nonnegative is None else args.nonnegative,
        model=model,
        steps=args.steps,
        meta_batch=args.meta_batch,
        lr=args.lr,
        inner_steps=args.inner_steps,
        inner_lr=args.inner_lr,
        support_steps=steps_of(args.support, data.step_minutes, "--support"),
        methods=methods,
        seed=args.seed,
    )
    if args.hidden:
        options["hidden"] = tuple(args.hidden)
    return ExperimentConfig(**options)


def _config_from_run(run: dict[str, Any]):
    from metamap.traffic.experiment import ExperimentConfig

    saved = run["experiment"]
    names = {f.name for f in fields(ExperimentConfig)}
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in names}
    return ExperimentConfig(**options)


def _adapted_method(method: str) -> str:
    """How a trained ``method`` adapts to a new sensor: meta-learners adapt, the pretrained network fine-tunes."""
    return "pretrain_finetune" if method == PRETRAIN else method


def _check_outputs(args: argparse.Namespace, names: tuple[str, ...]) -> None:
    """Refuse an ``--out`` that cannot be written, or where an output would replace one of the input files."""
    writable_output_folder(args.out)
    inputs = [path for flag in INPUT_FLAGS if (path := getattr(args, flag, None)) is not None]
    for name in names:
        output_file(args.out / name, inputs=inputs)


def _write_outputs(
    out: Path,
    targets: dict[str, Any],
    results: dict[str, dict[str, Any]],
    title: str,
    main_prediction: str | None = None,
    units: str = "mph",
) -> None:
    """``predictions.npz``, ``error_by_horizon.png`` and ``forecasts.png`` (readings in ``units``) of the first
    target."""
    import numpy as np
    import torch

    from metamap.traffic import plots

    main = next(iter(targets))
    target = targets[main]
    data = target.features.data
    origins = target.test_origins
    truth = target.truth
    arrays: dict[str, np.ndarray] = {
        "truth": truth.numpy().astype(np.float32),
        "origin_time": data.times[origins.numpy()].astype("datetime64[ns]").astype(np.int64),
        "sensor_ids": np.array([data.sensor_ids[int(i)] for i in target.nodes], dtype=np.str_),
        "methods": np.array(list(results[main]), dtype=np.str_),
    }
    if main_prediction is not None:
        arrays["prediction"] = results[main][main_prediction].prediction.numpy().astype(np.float32)
    for name, methods in results.items():
        infix = "" if name == main else f"{name}_"
        for method, result in methods.items():
            arrays[f"prediction_{infix}{method}"] = result.prediction.numpy().astype(np.float32)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "predictions.npz", **arrays)

    chosen = results[main]
    plots.error_by_horizon(
        {m: r.mae_by_step for m, r in chosen.items()},
        out / "error_by_horizon.png",
        title=title,
        step_minutes=data.step_minutes,
        units=units,
    )
    longest = list(next(iter(chosen.values())).errors)[-1]
    shown_methods = sorted(chosen, key=lambda m: chosen[m].errors[longest]["mae"])[:4]
    if main_prediction is not None and main_prediction not in shown_methods:
        shown_methods = [main_prediction, *shown_methods[:3]]
    observed = target.observed.sum(dim=(1, 2))
    shown = torch.sort(torch.argsort(observed, descending=True, stable=True)[:3]).values
    predictions = {m: chosen[m].prediction for m in shown_methods}
    plots.target_forecasts(target, predictions, shown, out / "forecasts.png", units=units)


# --------------------------------------------------------------------------- train


def _train(args: argparse.Namespace) -> int:
    from metamap.training.run_folder import claim_run_folder

    with claim_run_folder(args.out, resume=args.resume, overwrite=args.overwrite):
        return _train_in_run(args)


def _train_in_run(args: argparse.Namespace) -> int:
    import numpy as np

    from metamap.traffic.experiment import choose_settings, make_method, method_learner, train_settings
    from metamap.traffic.features import SeriesFeatures, fit_scaler
    from metamap.traffic.protocols import source_family
    from metamap.training import meta_train
    from metamap.training.checkpoint import add_to_latest_config
    from metamap.training.distributed import pick_device

    device = pick_device(args.device)
    if args.method not in TRAINED_METHODS:
        raise ConfigError(f"unknown method {args.method!r}; expected one of {', '.join(TRAINED_METHODS)}")
    writable_output_folder(args.out)
    data = _load_source(args)
    per_day = data.steps_per_day
    days = data.n_steps // per_day
    train_days = days if args.train_days is None else args.train_days
    if days < 2 or train_days > days:
        needed = "2 whole days of readings" if args.train_days is None else f"--train-days {train_days} whole days"
        raise DataError(
            f"{args.data}: training needs at least {needed}, the file holds "
            f"{data.n_steps} steps ({data.n_steps / per_day:.1f} days of {per_day} steps)"
        )
    config = _experiment(args, data, (args.method,))
    train_stop = train_days * per_day
    scaler = fit_scaler(data.values[:train_stop], data.mask[:train_stop])
    features = SeriesFeatures(data, scaler, config.hops, config.windows)
    family, validation, config, base_choice = source_family(
        features, np.arange(data.n_sensors), (0, train_stop), config
    )
    learner = method_learner(args.method, family.n_features, config).to(device)
    run = {
        "kind": RUN_KIND,
        "method": args.method,
        # Without the step count (in the checkpoint's "train" settings): --resume may extend a run.
        "experiment": {k: v for k, v in asdict(config).items() if k != "steps"},
        "scaler": scaler.state_dict(),
        "graph_hops": config.hops,
        "n_features": family.n_features,
        "data": {
            "file": args.data.name,
            "adjacency": args.adj.name if args.adj else None,
            "key": args.key,
            "channel": args.channel,
            "n_sensors": data.n_sensors,
            "step_minutes": data.step_minutes,
            "timezone": data.timezone,
            "steps_per_day": per_day,
            "train_days": train_days,
            "train_steps": train_stop,
        },
        "validation_sensors": [data.sensor_ids[int(i)] for i in validation.nodes],
        "base_choice": None if base_choice is None else base_choice.to_json(),
    }
    run = json.loads(json.dumps(run))  # as it comes back from the checkpoint (tuples as lists)
    result = meta_train(
        learner,
        family,
        train_settings(config, progress=not args.no_progress),
        run_dir=args.out,
        run_config=run,
        resume=args.resume,
    )

    method = _adapted_method(args.method)
    choice = choose_settings(make_method(method, learner, config, family.n_features, device), method, validation)
    options, validation_mae = choice.settings, choice.score
    adaptation = {
        "method": method,
        "options": options,
        "validation_mae": validation_mae,
        "validation": choice.to_json(),
    }
    add_to_latest_config(args.out, "adaptation", adaptation)
    shown = ", ".join(f"{k}={v}" for k, v in options.items()) or "none"
    print(
        f"trained {args.method} ({config.model} model) {result.steps_done} steps in {result.seconds:.1f} s on "
        f"{data.n_sensors} sensors x {train_days} days of {args.data.name}"
    )
    print(
        f"adaptation chosen on {len(validation.nodes)} validation sensors: {method} ({shown}), "
        f"validation MAE {validation_mae:.3f}"
    )
    print(f"run folder {args.out}")
    return 0


# --------------------------------------------------------------------------- adapt


@dataclass(frozen=True)
class _TrainedRun:
    """A run folder of ``metamap traffic train``, loaded: its settings, learner, and the adaptation chosen."""

    step: int
    run: dict[str, Any]
    config: ExperimentConfig
    learner: Any
    adaptation: dict[str, Any] | None

    def features(self, data: TrafficData, path: Path) -> Any:
        """The windows of ``data`` (read from ``path``) as the run's network expects them, or a one-line error."""
        from metamap.preprocessing import Standardizer
        from metamap.traffic.features import SeriesFeatures

        trained_step = self.run["data"]["step_minutes"]
        if data.step_minutes != trained_step:
            raise ConfigError(
                f"{path}: {data.step_minutes}-minute steps, but the run was trained on {trained_step}-minute steps"
            )
        try:
            scaler = Standardizer.from_state_dict(self.run["scaler"])
        except CheckpointError as exc:
            raise CheckpointError(
                f"unreadable normalization in the run ({exc}); a run of an older metamap must be trained again"
            ) from None
        features = SeriesFeatures(data, scaler, self.run["graph_hops"], self.config.windows)
        if features.n_features != self.run["n_features"]:
            raise CheckpointError(
                f"the run expects {self.run['n_features']} inputs per window; {path} gives {features.n_features}"
                " (a run of an older metamap must be trained again)"
            )
        return features

    def method(self, steps: int | None) -> tuple[str, dict[str, Any]]:
        """How the run adapts to new sensors and with which settings (``steps`` overrides the chosen ones)."""
        method = self.adaptation["method"] if self.adaptation else _adapted_method(self.run["method"])
        options = dict(self.adaptation["options"]) if self.adaptation else {}
        if steps is not None:
            options["steps"] = steps
            if method == "pretrain_finetune":
                options.setdefault("lr", 3e-4)
        return method, options


def _load_run(path: Path, steps: int | None, device: Any) -> _TrainedRun:
    """The traffic run folder ``path`` with its learner on ``device``; refused if it is not one, or if training
    did not finish (no adaptation settings chosen) and ``steps`` is None."""
    from metamap.traffic.experiment import method_learner
    from metamap.training import load_checkpoint
    from metamap.training.checkpoint import load_learner_state

    checkpoint = load_checkpoint(path)
    run = checkpoint.config.get("run") or {}
    if run.get("kind") != RUN_KIND:
        raise ConfigError(f"{path} is not a traffic run; expected a run folder written by metamap traffic train")
    config = _config_from_run(run)
    adaptation = checkpoint.config.get("adaptation")
    if adaptation is None and steps is None:
        raise CheckpointError(
            f"{path}: training did not finish, so no adaptation settings were chosen; "
            "resume it (metamap traffic train ... --resume) or pass --steps"
        )
    learner = method_learner(run["method"], run["n_features"], config)
    load_learner_state(learner, checkpoint, source=str(path))
    return _TrainedRun(checkpoint.step, run, config, learner.to(device), adaptation)


def _adapt(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from metamap.report import write_json
    from metamap.traffic.experiment import (
        SIMPLE_BASELINES,
        Target,
        make_method,
        require_finite,
        results_table,
        score,
    )
    from metamap.training.distributed import pick_device

    _check_outputs(args, OUTPUTS)
    device = pick_device(args.device)
    trained = _load_run(args.run, args.steps, device)
    config, learner = trained.config, trained.learner
    data = _load_source(args)
    features = trained.features(data, args.data)
    support_stop = steps_of(args.support, data.step_minutes, "--support")
    support = duration_label(args.support)
    if data.n_steps < support_stop:
        raise DataError(
            f"{args.data}: --support {support} needs {support_stop} steps of readings, "
            f"but the file holds {data.n_steps} ({data.n_steps / data.steps_per_day:.2f} days)"
        )
    if data.n_steps - features.horizon <= support_stop - 1:  # the first forecast is made at the last support step
        raise DataError(
            f"{args.data}: no steps left to forecast after the first {support} "
            f"({data.n_steps} steps in all); pass a shorter --support"
        )
    target = Target(features, torch.arange(data.n_sensors), (0, support_stop), (support_stop, data.n_steps))

    method, options = trained.method(args.steps)
    n_features = features.n_features
    results = {method: score(make_method(method, learner, config, n_features, device), target, options)}
    require_finite(method, results[method].prediction, options)
    for baseline in SIMPLE_BASELINES:
        results[baseline] = score(make_method(baseline, None, config, n_features), target, {})
    times = data.times
    payload = {
        "run": str(args.run),
        "step": trained.step,
        "method": method,
        "options": options,
        "model": config.model,
        "data": args.data.name,
        "timezone": data.timezone,
        "support": support,
        "n_sensors": data.n_sensors,
        "n_windows": len(target.test_origins),
        "test_period": [str(np.datetime_as_string(t, unit="m")) for t in (times[support_stop], times[-1])],
        "methods": {m: r.summary() for m, r in results.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "metrics.json", payload)
    _write_outputs(
        args.out,
        {"target": target},
        {"target": results},
        f"{args.data.name}: adapted on the first {support}",
        main_prediction=method,
        units=_unit(args, data),
    )
    print(
        f"{method} adapted to {data.n_sensors} sensors of {args.data.name} on the first {support}; "
        f"forecasting {len(target.test_origins)} windows; masked errors ({_unit(args, data)})"
    )
    print(results_table(results, f"{config.model}/").to_text())
    print(f"wrote {args.out}/metrics.json, predictions.npz, forecasts.png, error_by_horizon.png")
    return 0


PREDICT_SUFFIXES = (".csv", ".nc")


def _predict(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from metamap.traffic import plots
    from metamap.traffic.experiment import SIMPLE_BASELINES, Target, make_method, require_finite
    from metamap.traffic.forecast_files import write_forecasts
    from metamap.training.distributed import pick_device

    suffix = args.out.suffix.lower()
    if suffix not in PREDICT_SUFFIXES:
        raise ConfigError(f"--out: expected a .csv or .nc file, got {args.out}")
    if suffix == ".nc":
        from metamap.extras import require

        require("metamap traffic predict --out FILE.nc", "geo")
    inputs = [path for flag in INPUT_FLAGS if (path := getattr(args, flag, None)) is not None]
    plot_path = args.out.with_suffix(".png")
    for path in (args.out, plot_path):
        output_file(path, inputs=inputs)
    device = pick_device(args.device)
    trained = _load_run(args.run, args.steps, device)
    data = _load_source(args)
    features = trained.features(data, args.data)
    per_day, end = data.steps_per_day, data.n_steps
    support_steps = steps_of(args.support, data.step_minutes, "--support")
    support = (end - support_steps, end)
    if support[0] < 0 or len(features.origins(*support)) == 0:
        raise DataError(
            f"{args.data}: --support {duration_label(args.support)} needs {support_steps} steps with "
            f"{features.history + features.horizon} or more in a row to adapt on; the file holds {end}"
        )
    target = Target(features, torch.arange(data.n_sensors), support, (end, end + features.horizon))
    method, options = trained.method(args.steps)
    forecasts: dict[str, torch.Tensor] = {}  # method -> [N, horizon] in the file's unit
    for name in (method, *SIMPLE_BASELINES):
        model = make_method(
            name, trained.learner if name == method else None, trained.config, features.n_features, device
        )
        model.adapt(target, **(options if name == method else {}))
        forecasts[name] = model.predict(target)[:, 0]
    require_finite(method, forecasts[method], options)
    issued = data.times[-1]
    valid = features.times[end:]
    write_forecasts(args.out, data.sensor_ids, issued, valid, forecasts, method, data.step_minutes, data.timezone)
    shown = torch.argsort(torch.from_numpy(data.mask[-per_day:].sum(0)), descending=True, stable=True)[:3]
    plots.latest_forecasts(
        data,
        {m: forecasts[m] for m in (method, "persistence")},
        valid,
        np.sort(shown.numpy()),
        plot_path,
        units=_unit(args, data),
    )
    print(
        f"{method} adapted to {data.n_sensors} sensors of {args.data.name} on the last {duration_label(args.support)}; "
        f"forecasts from {np.datetime_as_string(issued, unit='m')} to {np.datetime_as_string(valid[-1], unit='m')}"
    )
    print(f"wrote {args.out} and {plot_path}")
    return 0


def _unit(args: argparse.Namespace, data: TrafficData) -> str:
    """``--units``, else mph for speed readings (a pandas ``.h5`` or the npz speed channel, not all whole
    numbers: whole non-negative readings are counts or flows), else none named."""
    if args.units:
        return args.units
    speed = args.data.suffix.lower() != ".npz" or args.channel == "speed"
    return "mph" if speed and not data.holds_counts else "the file's unit"


# --------------------------------------------------------------------------- evaluate


def _evaluate(args: argparse.Namespace) -> int:
    from metamap.traffic.experiment import compare, train_methods
    from metamap.training.distributed import pick_device

    device = pick_device(args.device)
    methods = _evaluation_methods(args.methods)
    _check_outputs(args, OUTPUTS)
    data = _load_source(args)
    plan = _new_city(args, data, methods) if args.target_data is not None else _new_sensors(args, data, methods)
    setup, config = plan.setup, plan.setup.config  # the base forecast chosen
    trained = train_methods(setup.family, config, progress=not args.no_progress, device=device)
    results = compare(trained, setup.targets, setup.validations, config, device)
    units = _unit(args, next(iter(setup.targets.values())).features.data)
    _print_evaluation(args, plan, results, units)
    _write_evaluation(args, plan, results, units)
    return 0


@dataclass(frozen=True)
class _Evaluation:
    """What ``evaluate`` compares: the protocol's name, a line describing it, its settings and tasks."""

    protocol: str  # "new_city" (P2) or "new_sensors" (P1)
    described: str
    config: ExperimentConfig
    setup: Setup


def _evaluation_methods(flag: str | None) -> tuple[str, ...]:
    """The methods named by ``--methods`` (comma-separated; all of them when the flag is not given)."""
    from metamap.traffic.experiment import METHODS

    if not flag:
        return METHODS
    methods = tuple(m.strip() for m in flag.split(",") if m.strip())
    if not methods:
        raise ConfigError(f"--methods: expected some of {','.join(METHODS)}, got {flag!r}")
    return methods


def _new_city(args: argparse.Namespace, data: TrafficData, methods: tuple[str, ...]) -> _Evaluation:
    """P2: train on ``data`` (its first ``--train-days`` where given), adapt to ``--target-data`` on K days."""
    from metamap.traffic.protocols import new_city

    per_day = data.steps_per_day
    days = data.n_steps // per_day
    target = _load_target(args, args.target_adj)
    if target.step_minutes != data.step_minutes:
        raise ConfigError(
            f"{args.target_data} has {target.step_minutes}-minute steps, {args.data} "
            f"{data.step_minutes}-minute steps; both must be the same"
        )
    if args.train_days is not None:
        if args.train_days > days:
            raise DataError(f"{args.data}: --train-days {args.train_days}, but the file holds {days} whole days")
        data = data.steps(0, args.train_days * per_day)
    config = _experiment(args, data, methods)
    if config.model == "graph" and target.adjacency is None:
        raise ConfigError("a graph model needs the target city's graph too: pass --target-adj (or --model node)")
    support = duration_label(args.support)
    if target.n_steps < config.support_steps:
        raise DataError(
            f"{args.target_data}: --support {support} needs {config.support_steps} steps of readings, "
            f"but the file holds {target.n_steps} ({target.n_steps / per_day:.2f} days)"
        )
    return _Evaluation(
        protocol="new_city",
        described=f"P2 new city: train on {args.data.name}, adapt to {args.target_data.name} on its first {support}",
        config=config,
        setup=new_city(data, target, config),
    )


def _new_sensors(args: argparse.Namespace, data: TrafficData, methods: tuple[str, ...]) -> _Evaluation:
    """P1: train on 70% of ``data``'s sensors over ``--train-days``, the other 30% adapt on the K days after."""
    from metamap.traffic.protocols import fits_test, min_train_days, new_sensors

    per_day = data.steps_per_day
    days = data.n_steps // per_day
    config = _experiment(args, data, methods)
    k = min_train_days(config.support_steps, per_day)
    train_days = args.train_days
    if train_days is None:
        train_days = days - 2 if days - 2 >= k else days - 1
    support = duration_label(args.support)
    if train_days < k or not fits_test(data, train_days):
        raise DataError(
            f"{args.data}: P1 with --support {support} needs --train-days >= {k} (the targets' support, "
            f"the validation sensors' one before it and a quarter day to score them) and a quarter day of test "
            f"steps after them; the file holds {data.n_steps / per_day:.1f} days (train days {train_days})"
        )
    days_text = f"{train_days} day{'s' if train_days > 1 else ''}"
    where = f"day {train_days}" if config.support_steps <= per_day else "them"
    return _Evaluation(
        protocol="new_sensors",
        described=f"P1 new sensors of {args.data.name}: train on {days_text}, targets adapt on the last {support} of {where}",
        config=config,
        setup=new_sensors(data, config, train_days=train_days, target_fraction=0.3),
    )


def _print_evaluation(
    args: argparse.Namespace, plan: _Evaluation, results: dict[str, dict[str, MethodResult]], units: str
) -> None:
    """One table per target (``results``: target name -> method -> its result), best MAE at 60 min first."""
    from metamap.traffic.experiment import results_table

    base = plan.setup.config.base or "nothing (plain targets)"
    print(f"\nthe networks correct {base}, chosen on the validation sensors" if plan.setup.base_choice else "")
    for name, methods_results in results.items():
        longest = list(next(iter(methods_results.values())).errors)[-1]
        print(f"\n{plan.described}; target {name!r}: masked errors ({units}), sorted by MAE at {longest}")
        print(results_table(methods_results, f"{plan.config.model}/").to_text())


def _write_evaluation(
    args: argparse.Namespace, plan: _Evaluation, results: dict[str, dict[str, MethodResult]], units: str
) -> None:
    """``metrics.json`` (protocol, settings, per-target summaries), predictions and plots into ``--out``."""
    from metamap.report import write_json

    payload = {
        "protocol": plan.protocol,
        "config": asdict(plan.setup.config),
        "base_choice": None if plan.setup.base_choice is None else plan.setup.base_choice.to_json(),
        "data": args.data.name,
        "target_data": args.target_data.name if args.target_data else None,
        "support": duration_label(args.support),
        "timezone": {name: t.features.data.timezone for name, t in plan.setup.targets.items()},
        "n_targets": {name: len(t.nodes) for name, t in plan.setup.targets.items()},
        "targets": {name: {m: r.summary() for m, r in res.items()} for name, res in results.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "metrics.json", payload)
    title = f"{plan.protocol} ({plan.config.model} model)"
    _write_outputs(args.out, plan.setup.targets, results, title, units=units)
    print(f"\nwrote {args.out}/metrics.json, predictions.npz, forecasts.png, error_by_horizon.png")


def _patterns(args: argparse.Namespace) -> int:
    from metamap.traffic.patterns import run_patterns
    from metamap.training.distributed import pick_device

    _check_outputs(args, PATTERN_OUTPUTS)
    device = pick_device(args.device)
    source = _load_source(args)
    target = _load_target(args, None)
    result = run_patterns(
        source,
        target,
        args.out,
        seed=args.seed,
        steps=args.steps,
        shots=tuple(args.shots),
        labels=args.labels,
        bin_minutes=args.bin,
        progress=True,
        device=device,
    )
    for k, scores in result["accuracy"].items():
        print(
            f"{k} labelled day(s) per pattern, balanced accuracy: "
            + ", ".join(f"{m} {v['balanced_mean']:.3f} ± {v['balanced_ci95']:.3f}" for m, v in scores.items())
        )
    print(f"wrote {args.out / 'patterns.json'} and plots in {args.out}")
    return 0
