"""``metamap astro photoz | classify``: the astro experiments on anyone's photometric catalogue.

- ``photoz``: all-data photo-z baselines (tuned by CV on a training split)
  and K-shot adaptation to new sky cells (or, ``--group-by magnitude``, to
  new bins of r magnitude); needs ugriz, redshift, ra and dec for sky cells
  (and a class column, else every row counts as a galaxy).
- ``classify``: 3-way K-shot star / galaxy / quasar classification with
  ProtoNet and Matching Networks beside kNN; needs ugriz and class.

Both write ``metrics.json`` in ``--out`` (and ``photoz.png`` for photoz).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from metamap.arguments import (
    add_device_flag,
    add_out_flag,
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
        "--group-by", default="sky", choices=("sky", "magnitude"), help="tasks are sky cells or bins of r magnitude"
    )
    photoz.add_argument("--bins", type=positive_int, default=20, help="magnitude bins (with --group-by magnitude)")
    photoz.add_argument("--cell-deg", type=positive_float, default=10.0, help="sky cell size in degrees")
    photoz.add_argument("--min-cell", type=positive_int, default=80, help="galaxies a cell needs to become a task")
    photoz.add_argument("--learners", default="maml,metasgd,anil", help="comma-separated meta-learners")
    photoz.add_argument("--quick", action="store_true", help="small CV grids (a smoke run)")
    photoz.set_defaults(handler=_photoz)

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
    from metamap.astro.photoz import region_data, run_all_data, run_fewshot
    from metamap.astro.plots import photoz_figure
    from metamap.report import write_json
    from metamap.training.distributed import pick_device

    writable_output_folder(args.out)
    device = pick_device(args.device)
    learner_names = _photoz_learners(args.learners)
    if max(args.shots) >= args.min_cell:
        raise ConfigError(
            f"--shots {max(args.shots)}: K support galaxies and at least one query must fit in every "
            f"task, and the smallest holds --min-cell {args.min_cell}; choose K < {args.min_cell}"
        )
    if args.group_by == "magnitude" and args.bins < 2:
        raise ConfigError(f"--bins: magnitude tasks need >= 2 bins (meta-train and test), got {args.bins}")
    cat = _load(args)
    # The grouping into tasks takes a second and refuses impossible settings: check it before the CV searches.
    region_data(
        cat, cell_deg=args.cell_deg, min_cell=args.min_cell, seed=args.seed, group_by=args.group_by, n_bins=args.bins
    )
    all_data = run_all_data(cat, seed=args.seed, quick=args.quick)
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
    write_json(args.out / "metrics.json", {"all_data": all_data, "fewshot": fewshot})
    photoz_figure(all_data, fewshot, args.out / "photoz.png")
    print(f"all data: {all_data['chosen']} sigma_NMAD {all_data['chosen_metrics']['sigma_nmad']:.4f}")
    for k, row in fewshot["by_k"].items():
        print(f"K={k}: " + ", ".join(f"{m} {v['sigma_nmad']:.4f}" for m, v in row.items()))
    print(f"wrote {args.out / 'metrics.json'} and {args.out / 'photoz.png'}")
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
