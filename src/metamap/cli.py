"""The ``metamap`` command: train, evaluate, demo, bench, and the domains (traffic, geo, energy, astro, physics)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

from metamap import __version__
from metamap.arguments import (
    add_device_flag,
    add_json_flag,
    add_out_flag,
    add_progress_flag,
    add_run_folder_flags,
    add_seed_flag,
    add_steps_flag,
    check_memory,
    nonnegative_int,
    output_file,
    positive_float,
    positive_int,
    writable_output_folder,
)
from metamap.errors import ConfigError, MetamapError, TrainingInterrupted

EVALUATION_BATCH = 25  # tasks evaluated at once


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose mistakes end in one stderr line (exit code 2), not the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except TrainingInterrupted as exc:
        print(f"metamap: {exc} (add --resume to the same command)", file=sys.stderr)
        return 130
    except MetamapError as exc:
        # One line even when the message quotes a file's bytes or a library's multi-line text.
        print(f"metamap: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    from metamap.bench import BENCHMARKS

    parser = OneLineParser(
        prog="metamap", description="Meta-learning and diffusion models for scientific and spatial data."
    )
    parser.add_argument("--version", action="version", version=f"metamap {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="meta-train a learner on a task family, then evaluate it")
    train.add_argument("--family", default="sinusoid", help="sinusoid | omniglot")
    train.add_argument("--data", help="data folder (omniglot: the folder holding images_background.npz)")
    train.add_argument(
        "--learner", default="maml", help="maml | fomaml | metasgd | anil | reptile | protonet | matching | pretrain"
    )
    train.add_argument("--n-way", type=positive_int, default=5)
    train.add_argument("--k-shot", type=positive_int, default=5)
    train.add_argument("--n-query", type=positive_int, default=None, help="query examples per task (per class)")
    train.add_argument("--inner-steps", type=nonnegative_int, default=1)
    train.add_argument("--inner-lr", type=positive_float, default=0.01)
    train.add_argument("--learn-inner-lr", action="store_true", help="MAML: learn per-step, per-tensor inner rates")
    train.add_argument("--chunk-size", type=positive_int, default=None, help="tasks per vmap chunk (bounds memory)")
    train.add_argument("--hidden", type=positive_int, nargs="+", default=None, help="MLP widths or Conv4 channels")
    add_steps_flag(train, "meta-training", default=1000, allow_zero=True)
    train.add_argument(
        "--max-minutes",
        type=positive_float,
        default=None,
        help="wall-clock budget for the run, counted across --resume (stops with a checkpoint)",
    )
    train.add_argument("--meta-batch", type=positive_int, default=25, help="tasks per meta-step (over all processes)")
    train.add_argument("--lr", type=positive_float, default=1e-3, help="outer (meta) learning rate")
    train.add_argument("--optimizer", default="adam", help="adam | sgd")
    add_seed_flag(train)
    train.add_argument("--val-every", type=nonnegative_int, default=0, help="validate every N steps (0: never)")
    train.add_argument("--checkpoint-every", type=nonnegative_int, default=500, help="0: only at the end")
    train.add_argument(
        "--episodes", type=nonnegative_int, default=600, help="test tasks for the final evaluation (0: skip)"
    )
    add_out_flag(train, "run", "checkpoints, metrics, evaluation")
    add_run_folder_flags(train)
    add_device_flag(train)
    add_progress_flag(train)
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="evaluate a trained run on its family's test split")
    evaluate.add_argument("run", type=Path, help="run folder (or checkpoint folder)")
    evaluate.add_argument("--episodes", type=positive_int, default=600)
    evaluate.add_argument(
        "--n-way", type=positive_int, default=None, help="test with another way than trained (metric learners)"
    )
    evaluate.add_argument("--k-shot", type=positive_int, default=None, help="test with another shot than trained")
    evaluate.add_argument("--n-query", type=positive_int, default=None)
    evaluate.add_argument(
        "--inner-steps", type=nonnegative_int, default=None, help="adaptation steps (gradient learners)"
    )
    add_seed_flag(evaluate, default=1234)
    add_json_flag(evaluate)
    add_device_flag(evaluate)
    evaluate.set_defaults(handler=_evaluate)

    demo = commands.add_parser("demo", help="the main job on bundled data: forecasting new LA traffic sensors")
    add_out_flag(demo, "folder", "demo.json and the plots", default=Path("runs/demo"))
    demo.add_argument("--quick", action="store_true", help="a seconds-long smoke version")
    add_device_flag(demo)
    demo.set_defaults(handler=_demo)

    bench = commands.add_parser("bench", help="run a benchmark; writes JSON (+ PNG)")
    bench.add_argument("name", help=" | ".join(BENCHMARKS))
    bench.add_argument("--quick", action="store_true")
    add_json_flag(bench, required=True)
    bench.set_defaults(handler=_bench)

    from metamap.astro.commands import add_astro_parser
    from metamap.energy.commands import add_energy_parser
    from metamap.extras import guard_commands
    from metamap.geo.commands import add_geo_parser
    from metamap.physics.commands import add_physics_parser
    from metamap.traffic.commands import add_traffic_parser

    # Parsers are built without the domains' optional dependencies; a command checks its extra when dispatched.
    for add_domain_parser in (
        add_traffic_parser,
        add_geo_parser,
        add_energy_parser,
        add_astro_parser,
        add_physics_parser,
    ):
        add_domain_parser(commands)
    guard_commands(commands)
    return parser


def run_config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON-able run configuration (see :mod:`metamap.recipes`) described by ``metamap train``'s flags."""
    family: dict[str, Any] = {"name": args.family, "k_shot": args.k_shot}
    if args.family == "omniglot":
        family.update(n_way=args.n_way, data=str(args.data) if args.data else None)
        family["n_query"] = args.n_query if args.n_query is not None else 15
    else:
        family["n_query"] = args.n_query if args.n_query is not None else 10
    learner: dict[str, Any] = {"name": args.learner}
    if args.learner not in ("protonet", "matching"):
        learner.update(inner_steps=args.inner_steps, inner_lr=args.inner_lr)
    if args.learn_inner_lr:
        learner["learn_inner_lr"] = True
    if args.chunk_size:
        learner["chunk_size"] = args.chunk_size
    model: dict[str, Any] = {}
    if args.hidden:
        model["hidden"] = args.hidden if args.family == "sinusoid" else args.hidden[0]
    return {"family": family, "model": model, "learner": learner, "seed": args.seed}


def _train(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from metamap.recipes import build_family, build_learner
    from metamap.training import TrainConfig, evaluate_learner, meta_train
    from metamap.training.distributed import distributed_session, pick_device
    from metamap.training.run_folder import claim_run_folder

    writable_output_folder(args.out)
    run = run_config_from_args(args)
    device = pick_device(args.device)
    per_process = -(-args.meta_batch // int(os.environ.get("WORLD_SIZE", "1")))  # the meta-batch is split over torchrun
    _check_batch_memory(
        run, per_process, device, training=True, hint="lower --meta-batch, --n-way, --k-shot or --n-query"
    )
    config = TrainConfig(
        steps=args.steps,
        meta_batch=args.meta_batch,
        lr=args.lr,
        optimizer=args.optimizer,
        seed=args.seed,
        val_every=args.val_every,
        checkpoint_every=args.checkpoint_every,
        progress=not args.no_progress,
        max_seconds=args.max_minutes * 60 if args.max_minutes is not None else None,
    )
    with (
        distributed_session(device) as rank,
        (  # rank 0 writes the run folder and holds it
            claim_run_folder(args.out, resume=args.resume, overwrite=args.overwrite) if rank == 0 else nullcontext()
        ),
    ):
        family = build_family(run["family"])
        learner = build_learner(run).to(device)
        result = meta_train(learner, family, config, run_dir=args.out, run_config=run, resume=args.resume)
        if rank != 0:
            return 0
        print(f"trained {result.steps_done} steps in {result.seconds:.1f} s; run folder {args.out}")
        if args.episodes:
            score = evaluate_learner(learner, family.split("test"), n_tasks=args.episodes, seed=1234)
            print(f"test: {score}")
            _write(args.out / "evaluation.json", {"run": run, "test": score.as_dict()})
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from metamap.learners import AdaptOptions
    from metamap.recipes import build_family, build_learner
    from metamap.training import evaluate_learner, load_checkpoint
    from metamap.training.checkpoint import load_learner_state
    from metamap.training.distributed import pick_device

    if args.json is not None:  # never over the run's checkpoints or training log
        kept = [
            f
            for f in (
                *args.run.glob("checkpoints/**/*"),
                *args.run.glob("*.safetensors"),
                *args.run.glob("state.json"),
                *args.run.glob("metrics.jsonl"),
            )
            if f.is_file()
        ]
        _output_file(args.json, "--json", inputs=kept)
    checkpoint = load_checkpoint(args.run)
    run = checkpoint.config.get("run")
    if not run:
        raise ConfigError(f"{args.run}: the checkpoint holds no run configuration; it was not written by metamap train")
    if run.get("kind") == "traffic":
        raise ConfigError(f"{args.run} is a traffic run; use metamap traffic adapt --run {args.run} --data ...")
    learner = build_learner(run)
    load_learner_state(learner, checkpoint, source=str(args.run))
    device = pick_device(args.device)
    learner.to(device)
    options = AdaptOptions(steps=args.inner_steps)
    overrides = {"n_way": args.n_way, "k_shot": args.k_shot, "n_query": args.n_query}
    family_spec = {**run["family"], **{k: v for k, v in overrides.items() if v is not None}}
    _check_batch_memory(
        {**run, "family": family_spec},
        min(EVALUATION_BATCH, args.episodes),
        device,
        training=False,
        hint="lower --n-way, --k-shot or --n-query",
    )
    score = evaluate_learner(
        learner,
        build_family(family_spec).split("test"),
        args.episodes,
        args.seed,
        tasks_per_batch=EVALUATION_BATCH,
        options=options,
    )
    print(f"{run['learner']['name']} on {family_spec} (step {checkpoint.step}): {score}")
    if args.json:
        _write(args.json, {"run": run, "test_family": family_spec, "step": checkpoint.step, "test": score.as_dict()})
    return 0


def _demo(args: argparse.Namespace) -> int:
    from metamap.demo import run_demo
    from metamap.training.distributed import pick_device

    run_demo(writable_output_folder(args.out), quick=args.quick, device=pick_device(args.device))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from metamap.bench import run_benchmark

    run_benchmark(args.name, args.quick, _output_file(args.json, "--json"))
    return 0


def _check_batch_memory(run: dict[str, Any], n_tasks: int, device, training: bool, hint: str) -> None:
    """Refuse a family the data cannot provide, or a batch of ``n_tasks`` episodes too large for the device."""
    from metamap.recipes import batch_memory, check_family_spec

    family = run["family"]
    check_family_spec(family)
    ways = f"{family['n_way']}-way " if "n_way" in family else ""
    check_memory(
        batch_memory(run, n_tasks, training=training),
        f"a batch of {n_tasks} {ways}{family['k_shot']}-shot tasks with {family['n_query']} queries",
        hint,
        device=str(device),
    )


def _output_file(path: Path, what: str, inputs: Iterable[Path] = ()) -> Path:
    """``path`` if it can be written as a new or replaced regular file that is none of ``inputs`` (else ConfigError)."""
    output_file(path, inputs=inputs, what=what)
    writable_output_folder(path.parent, what=f"{what} {path}: its folder")
    return path


def _write(path: Path, payload: dict[str, Any]) -> None:
    from metamap.report import write_json

    write_json(path, payload)
    print(f"wrote {path}")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
