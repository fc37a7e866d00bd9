"""``metamap geo train | fill | forecast | sample | evaluate``: diffusion models on your own netCDF/zarr fields.

- ``train --task fill|forecast|generate``: train on random patches streamed
  lazily (dask chunks) from the file's training times; writes a run folder
  with the loss log (``metrics.jsonl``, ``metrics.csv``) and ``loss.png``.
- ``fill``: fill the NaN pixels of every (or the chosen) time step with an
  ensemble; a ``fill`` run fills conditionally, a ``generate`` run by
  training-free inpainting.
- ``forecast``: the next 1..6 steps after a chosen time from a ``forecast`` run.
- ``sample``: new fields on the file's grid from a ``generate`` run.
- ``evaluate``: hide pixels of the file (a named mask or the user's), fill them with
  every baseline and a ``fill`` run, and score them (:mod:`metamap.geo.evaluation`):
  ``evaluation.json``, ``maps.png``, ``rank_histogram.png`` in ``--out``.

Outputs are netCDF with dims ``member, time, lat, lon`` (the input's own axis
names and latitude order), the variable's CF attributes and the input's
global attributes; ``fill`` adds ``ensemble_mean`` and ``observed``. ``fill``,
``forecast`` and ``sample`` also draw ``<out stem>.png`` beside the netCDF (the
first field: input, ensemble mean, a member or a later lead, ensemble spread).

Every ``--out`` is checked before any work (a folder for ``train``; a new or
writable regular file other than ``--data`` for the others), and a run is
applied only to data with the variable, units, calendar and grid coordinates
it was trained on (:func:`metamap.geo.models.check_applies`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from metamap.arguments import (
    add_device_flag,
    add_out_flag,
    add_progress_flag,
    add_run_folder_flags,
    add_seed_flag,
    add_steps_flag,
    output_file,
    positive_float,
    positive_int,
    writable_output_folder,
)
from metamap.errors import ConfigError
from metamap.geo.kriging import NEIGHBOURS

# (sampler, steps) by default: the fast solver for conditional fills, forecasts and samples; DDPM with
# RePaint-style resampling for training-free inpainting (the benchmarked setting; the fast solver fills poorly)
FAST = ("dpmpp", 20)
INPAINTING = ("ddpm", 25)


def add_geo_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``metamap geo {train,fill,forecast,sample,evaluate}``."""
    geo = subparsers.add_parser(
        "geo", help="diffusion models for gridded fields (train | fill | forecast | sample | evaluate)"
    )
    commands = geo.add_subparsers(dest="geo_command", required=True)

    train = commands.add_parser("train", help="train a diffusion model on random patches of a field")
    _data_flags(train)
    train.add_argument("--task", default="fill", help="fill | forecast | generate")
    add_out_flag(train, "run", "checkpoints, model, geo.json")
    add_steps_flag(train, "diffusion training", default=2000)
    train.add_argument("--batch", type=positive_int, default=16)
    train.add_argument("--patch", type=positive_int, nargs="+", default=[64], help="patch size: one size or h w")
    train.add_argument("--k", type=positive_int, default=3, help="forecast: number of previous fields")
    train.add_argument("--base", type=positive_int, default=16, help="UNet width of the first level (benchmarked: 16)")
    train.add_argument("--lr", type=positive_float, default=5e-4)
    train.add_argument(
        "--kriging-neighbours",
        type=positive_int,
        default=NEIGHBOURS,
        help=f"fill: observed pixels each missing one is kriged from (default {NEIGHBOURS}; 32 is at or below "
        "PyKrige on the bundled grids at about 3x the kriging time, see bench kriging)",
    )
    train.add_argument(
        "--train-days",
        type=positive_int,
        default=None,
        help="train on the days of the month 1..N only (default: every time step)",
    )
    train.add_argument(
        "--transform",
        default="auto",
        help="value transform: auto (log1p for precipitation, else none) | none | log1p | power",
    )
    train.add_argument(
        "--max-minutes", type=positive_float, default=None, help="wall-clock budget (stops with a checkpoint)"
    )
    train.add_argument(
        "--log-every",
        type=positive_int,
        default=10,
        help="steps per row of the loss log (metrics.jsonl, metrics.csv; loss.png at the end)",
    )
    add_seed_flag(train)
    add_run_folder_flags(train)
    add_device_flag(train)
    add_progress_flag(train)
    train.set_defaults(handler=_train)

    fill = commands.add_parser("fill", help="fill the NaN pixels of a field with an ensemble")
    _data_flags(fill)
    _sample_flags(fill)
    fill.add_argument("--times", type=int, nargs="+", default=None, help="time indices to fill (default all)")
    fill.add_argument("--resample", type=positive_int, default=4, help="generate runs: RePaint resampling per step")
    fill.add_argument(
        "--calibration",
        type=Path,
        default=None,
        help="fill runs: the evaluation.json that 'metamap geo evaluate' wrote for this run; its calibration "
        "(mean weight toward kriging, spread factor) is applied to every ensemble",
    )
    fill.set_defaults(handler=_fill)

    forecast = commands.add_parser("forecast", help="ensemble forecast of the next 1..6 steps")
    _data_flags(forecast)
    _sample_flags(forecast)
    forecast.add_argument(
        "--start", type=int, default=-1, help="time index of the last known field (default: the file's last)"
    )
    forecast.add_argument(
        "--leads", type=positive_int, nargs="+", default=[1, 2, 3, 4, 5, 6], help="leads in time steps"
    )
    forecast.set_defaults(handler=_forecast)

    evaluate = commands.add_parser(
        "evaluate", help="score a fill run against field mean, climatology, interpolation and kriging on a file"
    )
    _data_flags(evaluate)
    evaluate.add_argument("--run", type=Path, required=True, help="run folder of metamap geo train --task fill")
    evaluate.add_argument(
        "--mask",
        required=True,
        help="pixels to hide: sparse90 (90%% missing, stations) | blobs40 (40%%, clouds) | swath (50%%, stripes) "
        "| a .npy or netCDF file with the grid's shape (nonzero = observed)",
    )
    add_out_flag(evaluate, "folder", "evaluation.json, maps.png, rank_histogram.png", default=Path("evaluation"))
    evaluate.add_argument("--members", type=positive_int, default=16, help="ensemble members")
    add_steps_flag(evaluate, "sampler", default=20)
    evaluate.add_argument("--sampler", default="dpmpp", help="dpmpp | ddim | ddpm")
    evaluate.add_argument(
        "--times",
        type=int,
        nargs="+",
        default=None,
        help="time indices to score (default: 8 spread over the days after --test-days, else the file)",
    )
    evaluate.add_argument(
        "--test-days",
        type=positive_int,
        default=None,
        help="score the days after N of each month, on any calendar (default: the run's --train-days; "
        "not fewer: those are training days)",
    )
    evaluate.add_argument(
        "--tune-times",
        type=int,
        nargs="+",
        default=None,
        help="other time indices that choose the variograms and fit the calibration (default: 4 of the rest)",
    )
    add_device_flag(evaluate)
    add_progress_flag(evaluate)
    evaluate.set_defaults(handler=_evaluate)

    sample = commands.add_parser("sample", help="draw new fields on the file's grid")
    _data_flags(sample)
    _sample_flags(sample)
    sample.set_defaults(handler=_sample)


def _data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="netCDF file or zarr store")
    parser.add_argument("--var", required=True, help="variable name, e.g. t2m")


def _sample_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", type=Path, required=True, help="run folder written by metamap geo train")
    add_out_flag(parser, "file", "netCDF")
    parser.add_argument("--members", type=positive_int, default=16, help="ensemble members (sample: number of fields)")
    add_steps_flag(
        parser, "sampler", default=None, unset=f"{FAST[1]}; {INPAINTING[1]} when filling with a generate run"
    )
    parser.add_argument(
        "--sampler",
        default=None,
        help=f"dpmpp | ddim | ddpm (default {FAST[0]}; {INPAINTING[0]} when filling with a generate run)",
    )
    add_seed_flag(parser)
    add_device_flag(parser)
    add_progress_flag(parser)


def _train(args: argparse.Namespace) -> int:
    import numpy as np

    from metamap.geo.io import DEFAULT_CHUNKS, open_field
    from metamap.geo.models import RUN_FILES
    from metamap.geo.train import train_task
    from metamap.training.distributed import pick_device
    from metamap.training.run_folder import claim_run_folder

    device = pick_device(args.device)
    with claim_run_folder(
        args.out, resume=args.resume, overwrite=args.overwrite, outputs=RUN_FILES, inputs=(args.data,)
    ):
        field = open_field(args.data, args.var, chunks=DEFAULT_CHUNKS)
        times = np.arange(field.shape[0])
        if args.train_days is not None:
            times = times[field.day_of_month() <= args.train_days]
        patch = args.patch[0] if len(args.patch) == 1 else tuple(args.patch[:2])
        model = train_task(
            field,
            args.task,
            times,
            steps=args.steps,
            run_dir=args.out,
            batch=args.batch,
            patch=patch,
            k=args.k,
            base=args.base,
            lr=args.lr,
            seed=args.seed,
            max_scan=128,
            transform=args.transform,
            log_every=args.log_every,
            train_days=args.train_days,
            max_seconds=args.max_minutes * 60 if args.max_minutes is not None else None,
            progress=not args.no_progress,
            device=device,
            kriging_neighbours=args.kriging_neighbours,
        )
    print(f"trained {model.trained.step} steps in {model.trained.seconds:.1f} s; run folder {args.out}")
    return 0


def _load(args: argparse.Namespace, task: str | tuple[str, ...]):
    """The run's model, the field and the static channels, after checking ``--out`` and that the field is
    the run's variable on the run's grid."""
    output_file(args.out, inputs=[args.data])
    writable_output_folder(args.out.parent, what=f"--out {args.out}: its folder")
    return _load_checked(args, task)


def _load_checked(args: argparse.Namespace, task: str | tuple[str, ...]):
    """:func:`_load` without the ``--out`` check."""
    from metamap.geo.data import static_channels
    from metamap.geo.io import open_field
    from metamap.geo.models import GeoModel, check_applies
    from metamap.training.distributed import pick_device

    model = GeoModel.load(args.run, pick_device(args.device))
    tasks = (task,) if isinstance(task, str) else task
    if model.meta["task"] not in tasks:
        raise ConfigError(f"{args.run} is a {model.meta['task']} run; this command needs a {' or '.join(tasks)} run")
    field = open_field(args.data, args.var)
    check_applies(model.meta, field, f"--data {args.data}", f"the run {args.run}")
    sampler, steps = INPAINTING if args.geo_command == "fill" and model.meta["task"] == "generate" else FAST
    args.sampler, args.steps = args.sampler or sampler, args.steps or steps  # what runs is what history records
    static = static_channels(field.lat, field.lon, tuple(model.meta["lat_range"]), tuple(model.meta["lon_range"]))
    return model, field, static


def _history(model_task: str, args: argparse.Namespace, run: str) -> str:
    """One ``history`` line: the UTC time, the command with every option it ran with (defaults included)
    and the inputs, e.g. ``2026-12-02T22:30:00Z metamap geo fill --data in.nc ... (fill run runs/fill)``."""
    import datetime
    import shlex

    skip = {"handler", "command", "geo_command"}
    options = []
    for key, value in vars(args).items():
        if key in skip or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        values = value if isinstance(value, list) else [] if value is True else [value]
        options.append(" ".join([flag, *(shlex.quote(str(v)) for v in values)]))
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{stamp} metamap geo {args.geo_command} {' '.join(options)} ({model_task} run {run})"


def _fill(args: argparse.Namespace) -> int:
    import numpy as np

    from metamap.geo.anomaly import field_fraction
    from metamap.geo.fill import conditional_fill, inpaint_fill
    from metamap.geo.io import write_ensemble
    from metamap.progress import progress_bar

    model, field, static = _load(args, ("fill", "generate"))
    calibration = None if args.calibration is None else _read_calibration(args.calibration, args.run, model.meta)
    scaler, never_valid = model.scaler, model.never_valid
    indices = _time_indices(args.times, np.arange(field.shape[0]), field.shape[0], "--times")
    values = field.values(indices)
    fraction = field_fraction(field)[indices]
    out = []
    for i, raw in enumerate(progress_bar(values, desc="fill", enabled=not args.no_progress)):
        options = dict(
            members=args.members, steps=args.steps, sampler=args.sampler, seed=args.seed + i, never_valid=never_valid
        )
        filler = conditional_fill if model.meta["task"] == "fill" else inpaint_fill
        if model.meta["task"] == "generate":
            options["resample"] = args.resample
        elif calibration is not None:
            options["calibration"] = calibration
        out.append(filler(model, scaler.to_model(raw[None], fraction[i : i + 1])[0], static, **options))
    members = scaler.from_model(np.stack(out, axis=1), fraction)
    members[:, :, never_valid] = np.nan
    write_ensemble(
        args.out,
        members,
        field,
        field.times[indices],
        _history(model.meta["task"], args, args.run),
        extra={"ensemble_mean": members.mean(axis=0), "observed": np.isfinite(values)},
    )
    first = members[:, 0]
    picture = _preview(
        args.out,
        field,
        [("observed (first time)", values[0]), ("ensemble mean", first.mean(0)), ("member 1", first[0])],
        ("ensemble std", first.std(0)),
    )
    print(
        f"filled {len(indices)} fields ({int((~np.isfinite(values)).sum())} missing pixels) "
        f"with {args.members} members; wrote {args.out} and {picture.name}"
    )
    return 0


def _forecast(args: argparse.Namespace) -> int:
    import numpy as np

    from metamap.geo.anomaly import field_fraction
    from metamap.geo.forecast import MAX_LEAD, diffusion_forecast
    from metamap.geo.io import write_ensemble

    model, field, static = _load(args, "forecast")
    scaler, never_valid = model.scaler, model.never_valid
    k, n_times = int(model.meta["k"]), field.shape[0]
    start = args.start % n_times if -n_times <= args.start < n_times else None
    if start is None or start < k - 1:
        raise ConfigError(f"--start must index a time with {k} fields up to it (k={k}); got {args.start} of {n_times}")
    if min(args.leads) < 1 or max(args.leads) > MAX_LEAD:
        raise ConfigError(f"--leads must lie in 1..{MAX_LEAD}, got {args.leads}")
    fraction = field_fraction(field)
    history = scaler.to_model(field.values(slice(start - k + 1, start + 1)), fraction[start - k + 1 : start + 1])
    ensembles = diffusion_forecast(
        model,
        history,
        static,
        list(args.leads),
        members=args.members,
        steps=args.steps,
        sampler=args.sampler,
        seed=args.seed,
        progress=not args.no_progress,
    )
    times = field.times
    step = times[start] - times[start - 1] if start >= 1 else 1
    period = fraction[start] - fraction[start - 1] if start >= 1 else 0.0
    lead_fraction = np.asarray([(fraction[start] + lead * period) % 1.0 for lead in args.leads])
    members = scaler.from_model(np.moveaxis(ensembles, 0, 1), lead_fraction)
    members[:, :, never_valid] = np.nan
    valid_times = np.asarray([times[start] + lead * step for lead in args.leads])
    write_ensemble(
        args.out,
        members,
        field,
        valid_times,
        _history("forecast", args, args.run),
        extra={"ensemble_mean": members.mean(axis=0)},
    )
    last = len(args.leads) - 1
    picture = _preview(
        args.out,
        field,
        [
            ("last field", field.values(slice(start, start + 1))[0]),
            (f"mean, lead {args.leads[0]}", members[:, 0].mean(0)),
            (f"mean, lead {args.leads[last]}", members[:, last].mean(0)),
        ],
        (f"std, lead {args.leads[last]}", members[:, last].std(0)),
    )
    print(
        f"forecast leads {args.leads} after {times[start]} with {args.members} members; "
        f"wrote {args.out} and {picture.name}"
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from metamap.geo import plots
    from metamap.geo.evaluation import SCENARIOS, evaluate_fill, scenario_masks
    from metamap.geo.masks import read_mask
    from metamap.report import format_table, write_json

    writable_output_folder(args.out)
    if args.mask not in SCENARIOS and not Path(args.mask).exists():
        raise ConfigError(f"--mask: expected {', '.join(SCENARIOS)} or an existing mask file, got {args.mask!r}")
    model, field, _ = _load_checked(args, "fill")
    n_times = field.shape[0]
    held_out = _held_out_times(model.meta, field)
    scored = held_out if args.test_days is None else _test_times(args.test_days, model.meta, field)
    times = _time_indices(args.times, _spread(scored, 8), n_times, "--times")
    tune = _time_indices(args.tune_times, _spread(np.setdiff1d(held_out, times), 4), n_times, "--tune-times")
    if not len(tune):
        raise ConfigError(
            f"no time step is left to tune on besides the {len(times)} scored; pass --tune-times (or fewer --times)"
        )
    if args.mask in SCENARIOS:
        masks = scenario_masks(args.mask)
    else:
        observed = read_mask(Path(args.mask), field.shape[1:])

        def masks(number: int, shape: tuple[int, int]) -> np.ndarray:
            return observed  # the user's mask for every field

    evaluation = evaluate_fill(
        model,
        field,
        times,
        tune,
        masks,
        members=args.members,
        steps=args.steps,
        sampler=args.sampler,
        progress=not args.no_progress,
    )
    result = {
        "command": "metamap geo evaluate",
        "run": str(args.run),
        "data": str(args.data),
        "var": args.var,
        "units": field.units,
        "mask": args.mask,
        "members": args.members,
        "sampler": f"{args.sampler} {args.steps} steps",
        **evaluation.summary,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "evaluation.json", result)
    case, kriging, ensemble = evaluation.example
    mean = ensemble.mean(axis=0)
    plots.fields(
        [
            ("truth", case.truth),
            ("observed", case.hidden),
            (f"{evaluation.summary['kriging_reference']}", kriging),
            ("ensemble mean", mean),
        ],
        args.out / "maps.png",
        field.lat,
        field.lon,
        field.units,
        own_scale=[
            ("ensemble std", ensemble.std(axis=0), "viridis"),
            ("ensemble mean - truth", mean - case.truth, "RdBu_r"),
        ],
    )
    plots.rank_histograms({"diffusion_residual": evaluation.histogram}, args.out / "rank_histogram.png")
    rows = [
        [name, m["rmse"], m["crps"], m.get("spread_skill", "-"), m["seconds_median"]]
        for name, m in evaluation.summary["methods"].items()
    ]
    print(f"{args.var} ({field.units}) on {len(times)} fields, mask {args.mask}; scores on the hidden pixels")
    print(format_table(["method", "RMSE", "CRPS", "spread/skill", "s/field"], rows))
    print(
        f"RMSE / {evaluation.summary['kriging_reference']}: {evaluation.summary['rmse_ratio_vs_kriging']:.3f}; "
        f"wrote {args.out / 'evaluation.json'}, maps.png, rank_histogram.png"
    )
    return 0


def _read_calibration(path: Path, run: Path, meta: dict):
    """The calibration in ``path`` (an ``evaluation.json`` of ``geo evaluate``) for the fill ``run``; ConfigError
    for a generate run, an unreadable file or an evaluation of another run."""
    import json

    from metamap.geo.calibration import Calibration

    if meta["task"] != "fill":
        raise ConfigError(f"--calibration applies to fill runs; {run} is a {meta['task']} run")
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--calibration {path}: expected the evaluation.json of geo evaluate ({exc})") from exc
    if not isinstance(record, dict) or record.get("command") != "metamap geo evaluate":
        raise ConfigError(f"--calibration {path}: not an evaluation.json written by metamap geo evaluate")
    evaluated = Path(str(record.get("run")))
    if evaluated.resolve() != run.resolve():
        raise ConfigError(f"--calibration {path} was fitted for the run {evaluated}, not {run}")
    return Calibration.from_json(record.get("calibration"), f"--calibration {path}")


def _preview(out: Path, field, panels: list, spread: tuple) -> Path:
    """``<out stem>.png`` beside the netCDF ``out``: the ``panels`` ``(title, [H, W])`` on one colour scale,
    then ``spread`` ``(title, [H, W])`` on its own."""
    from metamap.geo import plots

    return plots.fields(
        panels, out.with_suffix(".png"), field.lat, field.lon, field.units, own_scale=[(*spread, "viridis")]
    )


def _held_out_times(meta: dict, field):
    """The time indices of ``field`` a run never trained on: the days after its ``train_days`` of each month
    when it records them (``geo train --train-days``); else every time index."""
    import numpy as np

    train_days = meta.get("train_days")
    every = np.arange(field.shape[0])
    if train_days is None:
        return every
    return every[field.day_of_month() > int(train_days)]


def _test_times(test_days: int, meta: dict, field):
    """The time indices on the days after ``test_days`` of each month (ConfigError before the run's
    ``train_days`` or where no such day is in the file)."""
    import numpy as np

    train_days = meta.get("train_days")
    if train_days is not None and test_days < int(train_days):
        raise ConfigError(f"--test-days {test_days} would score training days: the run trained on days 1..{train_days}")
    times = np.flatnonzero(field.day_of_month() > test_days)
    if not len(times):
        raise ConfigError(f"--test-days {test_days}: the file has no day after {test_days} in any month")
    return times


def _spread(indices, n: int):
    """At most ``n`` of ``indices`` evenly spread over them."""
    import numpy as np

    return indices[np.linspace(0, len(indices) - 1, min(n, len(indices))).round().astype(int)]


def _time_indices(requested: list[int] | None, default, n_times: int, flag: str):
    """``requested`` (or ``default``) time indices as non-negative ints, each checked against ``n_times``."""
    import numpy as np

    if requested is None:
        return np.asarray(default, int)
    if min(requested) < -n_times or max(requested) >= n_times:
        raise ConfigError(f"{flag} must index the file's {n_times} time steps, got {requested}")
    return np.asarray(requested, int) % n_times


def _sample(args: argparse.Namespace) -> int:
    import numpy as np

    from metamap.geo.anomaly import field_fraction
    from metamap.geo.generate import generate
    from metamap.geo.io import write_ensemble

    model, field, static = _load(args, "generate")
    fields = generate(
        model,
        static,
        args.members,
        steps=args.steps,
        sampler=args.sampler,
        seed=args.seed,
        never_valid=None,
        progress=not args.no_progress,
    )
    members = model.scaler.from_model(fields[:, None], field_fraction(field)[:1])
    members[:, :, model.never_valid] = np.nan
    write_ensemble(args.out, members, field, field.times[:1], _history("generate", args, args.run))
    drawn = members[:, 0]
    picture = _preview(
        args.out, field, [(f"sample {i + 1}", drawn[i]) for i in range(min(3, len(drawn)))], ("std", drawn.std(0))
    )
    print(
        f"drew {args.members} fields on the {field.shape[1]} x {field.shape[2]} grid; wrote {args.out} and {picture.name}"
    )
    return 0
