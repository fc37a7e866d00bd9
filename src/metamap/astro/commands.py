"""``metamap astro photoz | predict | classify``: the astro experiments and tools on anyone's catalogue.

- ``photoz``: all-data photo-z baselines (tuned by CV on a training split),
  the chosen model's redshift quantiles and out-of-distribution flag, and
  K-shot adaptation to new sky cells (or, ``--group-by magnitude``, to
  new bins of r magnitude; ``--group-by faint``, from the bright bins to the
  faintest); needs ugriz, redshift, ra and dec for sky cells
  (and a class column, else every row counts as a galaxy). ``--save RUN``
  keeps the chosen model (no pickle: see :mod:`metamap.astro.predictor`).
- ``predict``: a saved run applied to a new catalogue: z_phot, quantiles
  0.05 / 0.16 / 0.5 / 0.84 / 0.95, OOD score and flag per object, written
  beside the catalogue's own columns as .parquet or .csv.
- ``classify``: 3-way K-shot star / galaxy / quasar classification with
  ProtoNet and Matching Networks beside kNN; needs ugriz and class.

``photoz`` and ``classify`` write ``metrics.json`` in ``--out`` (and ``photoz.png`` for photoz). Every
command reading a catalogue takes ``--columns`` (:func:`metamap.astro.catalogue.parse_columns`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from metamap.arguments import (
    add_device_flag,
    add_out_flag,
    add_run_folder_flags,
    add_seed_flag,
    add_steps_flag,
    positive_float,
    positive_int,
    writable_output_folder,
)
from metamap.errors import ConfigError

if TYPE_CHECKING:
    from metamap.astro.catalogue import Catalogue

# torch and the models are imported inside the handlers: building the parser stays light.
PHOTOZ_LEARNERS = ("maml", "fomaml", "metasgd", "anil", "reptile")  # adapt by inner SGD steps
GROUPINGS = ("sky", "magnitude", "faint")  # the group_by values of metamap.astro.photoz.region_data


def add_astro_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``metamap astro {photoz,classify}``."""
    astro = subparsers.add_parser("astro", help="photometric redshift and few-shot classification on a catalogue")
    commands = astro.add_subparsers(dest="astro_command", required=True)

    photoz = commands.add_parser("photoz", help="photo-z on all data and K-shot in new sky cells")
    _common(photoz)
    photoz.add_argument(
        "--shots", type=positive_int, nargs="+", default=[10, 20, 50], help="labelled galaxies per new cell"
    )
    photoz.add_argument(
        "--group-by",
        default="sky",
        choices=GROUPINGS,
        help="tasks are sky cells, bins of r magnitude split at random, or the same bins ordered: meta-train on "
        "the brightest, test on the faintest",
    )
    photoz.add_argument(
        "--bins", type=positive_int, default=20, help="equally populated bins of r (--group-by magnitude | faint)"
    )
    photoz.add_argument("--cell-deg", type=positive_float, default=10.0, help="sky cell size in degrees")
    photoz.add_argument("--min-cell", type=positive_int, default=80, help="galaxies a cell needs to become a task")
    photoz.add_argument("--learners", default="maml,metasgd,anil", help="comma-separated meta-learners")
    photoz.add_argument("--quick", action="store_true", help="small CV grids (a smoke run)")
    photoz.add_argument(
        "--save", type=Path, default=None, metavar="RUN", help="run folder: keep the chosen model for astro predict"
    )
    add_run_folder_flags(photoz, resumable=False)
    _ood_flag(photoz, "0.01")
    photoz.add_argument("--no-fewshot", action="store_true", help="skip the K-shot protocol (all-data model only)")
    photoz.set_defaults(handler=_photoz)

    predict = commands.add_parser("predict", help="apply a saved photo-z run: z_phot, quantiles, OOD flag")
    predict.add_argument("--run", type=Path, required=True, help="run folder written by metamap astro photoz --save")
    _data_flags(predict)
    add_out_flag(predict, "file", "the catalogue with z_phot, z_q05 ... z_q95, ood_score, ood_flag (.parquet | .csv)")
    _ood_flag(predict, "the run's")
    predict.set_defaults(handler=_predict)

    classify = commands.add_parser("classify", help="3-way K-shot star / galaxy / QSO classification")
    _common(classify)
    classify.add_argument(
        "--shots", type=positive_int, nargs="+", default=[1, 5, 10], help="labelled objects per class"
    )
    classify.add_argument("--cell-deg", type=positive_float, default=10.0, help="sky cell size of the region split")
    classify.set_defaults(handler=_classify)


def _data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="catalogue: .csv | .parquet | .fits")
    parser.add_argument(
        "--columns",
        default=None,
        metavar="FIELD=COLUMN,...",
        help="which column holds what, e.g. u=dered_u,g=dered_g,r=dered_r,i=dered_i,z=dered_z,redshift=z_spec "
        "(fields: u g r i z, u_err ... z_err, redshift, ra, dec, class; the rest are found by name)",
    )


def _ood_flag(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--ood-fpr",
        type=positive_float,
        default=None,
        help="share of training-like galaxies the OOD flag may catch (its threshold, chosen on the training "
        f"galaxies' leave-one-out scores; default {default})",
    )


def _ood_fpr(args: argparse.Namespace, default: float | None) -> float | None:
    """``--ood-fpr`` (or ``default``), refused (ConfigError) outside (0, 1)."""
    if args.ood_fpr is not None and not args.ood_fpr < 1:
        raise ConfigError(f"--ood-fpr: expected a rate in (0, 1), got {args.ood_fpr}")
    return default if args.ood_fpr is None else float(args.ood_fpr)


def _load(args: argparse.Namespace) -> Catalogue:
    """The ``--data`` catalogue read with the ``--columns`` mapping."""
    from metamap.astro.catalogue import load_catalogue, parse_columns

    return load_catalogue(args.data, parse_columns(args.columns))


def _common(parser: argparse.ArgumentParser) -> None:
    _data_flags(parser)
    add_out_flag(parser, "folder", "metrics.json (and plots)")
    add_steps_flag(parser, "meta-training (per learner)", default=2000)
    parser.add_argument("--episodes", type=positive_int, default=600, help="test episodes per K")
    add_seed_flag(parser)
    add_device_flag(parser)


def _photoz_learners(text: str) -> list[str]:
    """The comma-separated ``--learners`` as a list of gradient meta-learner names (ConfigError otherwise)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in PHOTOZ_LEARNERS]
    if not names or unknown:
        raise ConfigError(
            f"--learners: expected comma-separated names among {', '.join(PHOTOZ_LEARNERS)}, got {text!r}"
        )
    return names


def _photoz(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from metamap.astro.predictor import MODEL_FILES
    from metamap.training.run_folder import claim_run_folder

    writable_output_folder(args.out)
    claim = (
        nullcontext()
        if args.save is None
        else claim_run_folder(args.save, resume=False, overwrite=args.overwrite, outputs=MODEL_FILES, what="--save")
    )
    with claim:
        return _photoz_in_run(args)


def _photoz_in_run(args: argparse.Namespace) -> int:
    from metamap.astro.photoz import region_data, run_all_data, run_fewshot, run_probabilistic
    from metamap.astro.plots import photoz_figure
    from metamap.astro.predictor import save_predictor
    from metamap.report import write_json
    from metamap.training.distributed import pick_device

    device = pick_device(args.device)
    learner_names = _photoz_learners(args.learners)
    ood_fpr = _ood_fpr(args, None) or 0.01
    if max(args.shots) >= args.min_cell:
        raise ConfigError(
            f"--shots {max(args.shots)}: K support galaxies and at least one query must fit in every "
            f"task, and the smallest holds --min-cell {args.min_cell}; choose K < {args.min_cell}"
        )
    if args.group_by in ("magnitude", "faint") and args.bins < 3:
        raise ConfigError(f"--bins: magnitude tasks need >= 3 bins (meta-train, meta-val, test), got {args.bins}")
    cat = _load(args)
    if not args.no_fewshot:
        # The grouping into tasks takes a second and refuses impossible settings: check it before the CV searches.
        region_data(
            cat,
            cell_deg=args.cell_deg,
            min_cell=args.min_cell,
            seed=args.seed,
            group_by=args.group_by,
            n_bins=args.bins,
        )
    all_data = run_all_data(cat, seed=args.seed, quick=args.quick)
    probabilistic, predictor = run_probabilistic(cat, all_data, seed=args.seed, quick=args.quick, ood_fpr=ood_fpr)
    fewshot = None
    if not args.no_fewshot:
        fewshot = run_fewshot(
            cat,
            shots=args.shots,
            train_k=args.shots[len(args.shots) // 2],
            steps=args.steps,
            episodes=args.episodes,
            val_episodes=max(10, args.episodes // 6),
            cell_deg=args.cell_deg,
            min_cell=args.min_cell,
            learner_names=learner_names,
            seed=args.seed,
            quick=args.quick,
            group_by=args.group_by,
            n_bins=args.bins,
            device=device,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "metrics.json", {"all_data": all_data, "probabilistic": probabilistic, "fewshot": fewshot})
    photoz_figure(all_data, fewshot, args.out / "photoz.png")
    print(f"all data: {all_data['chosen']} sigma_NMAD {all_data['chosen_metrics']['sigma_nmad']:.4f}")
    print(
        f"PDF: CRPS {probabilistic['crps']:.4f}, PIT KS {probabilistic['pit_ks']:.3f}, "
        f"68% interval coverage {probabilistic['coverage_68']:.2f}; OOD flag on "
        f"{probabilistic['ood']['test_galaxies_flagged']:.1%} of test galaxies"
    )
    for k, row in (fewshot or {}).get("by_k", {}).items():
        print(f"K={k}: " + ", ".join(f"{m} {v['sigma_nmad']:.4f}" for m, v in row.items()))
    if args.save is not None:
        save_predictor(predictor, args.save)
        print(f"saved the model in {args.save} (apply it with metamap astro predict --run {args.save})")
    print(f"wrote {args.out / 'metrics.json'} and {args.out / 'photoz.png'}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from metamap.arguments import output_file
    from metamap.astro.catalogue import BANDS, catalogue_from_frame, parse_columns, read_table
    from metamap.astro.predictor import load_predictor
    from metamap.errors import DataError
    from metamap.report import atomic_write_bytes

    suffix = args.out.name.lower().rsplit(".", 1)[-1]
    if suffix not in ("parquet", "pq", "csv"):
        raise ConfigError(f"--out {args.out}: expected a .parquet or .csv file name")
    output_file(args.out, inputs=[args.data])
    ood_fpr = _ood_fpr(args, None)
    predictor = load_predictor(args.run)
    if ood_fpr is not None:
        predictor.ood_fpr = ood_fpr
    mapping = parse_columns(args.columns)
    frame = read_table(args.data)
    cat = catalogue_from_frame(frame, source=str(args.data), columns=mapping)
    differ = [b for b in BANDS if b not in mapping and cat.columns[b].lower() != predictor.columns[b].lower()]
    if differ:
        trained = ",".join(f"{b}={predictor.columns[b]}" for b in BANDS)
        found = ",".join(f"{b}={cat.columns[b]}" for b in BANDS)
        raise ConfigError(
            f"{args.data}: the run was trained on the bands {trained}; this catalogue gives {found}; "
            f"if these columns hold the same photometry, pass --columns {','.join(f'{b}={cat.columns[b]}' for b in differ)}"
        )
    result = predictor.predict(cat).to_frame()
    clash = [c for c in result.columns if c in frame.columns]
    if clash:
        raise DataError(f"{args.data}: already has column(s) {clash}; rename them or drop them before predicting")
    out = frame.reset_index(drop=True).join(result)
    data = out.to_csv(index=False).encode() if suffix == "csv" else out.to_parquet(index=False)
    atomic_write_bytes(args.out, data)
    flagged = int(result["ood_flag"].sum())
    print(
        f"{len(out)} objects: median z_phot {result['z_phot'].median():.3f}; {flagged} flagged out of distribution "
        f"(score > {predictor.ood_threshold:.3g}, a {predictor.ood_fpr:.0%} false-positive rate on the training "
        f"galaxies); wrote {args.out}"
    )
    return 0


def _classify(args: argparse.Namespace) -> int:
    from metamap.astro.classify import run_classification
    from metamap.report import write_json
    from metamap.training.distributed import pick_device

    writable_output_folder(args.out)
    device = pick_device(args.device)
    result = run_classification(
        _load(args),
        shots=args.shots,
        train_k=args.shots[len(args.shots) // 2],
        steps=args.steps,
        episodes=args.episodes,
        cell_deg=args.cell_deg,
        seed=args.seed,
        device=device,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "metrics.json", result)
    for k, row in result["by_k"].items():
        print(f"{k}-shot accuracy: " + ", ".join(f"{m} {v['mean']:.3f} ± {v['ci95']:.3f}" for m, v in row.items()))
    print(f"wrote {args.out / 'metrics.json'}")
    return 0
