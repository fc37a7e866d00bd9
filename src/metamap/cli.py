"""The ``metamap`` command: train, evaluate, demo, bench, and the domains (traffic, geo, energy, astro, physics)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from metamap import __version__
from metamap.errors import ConfigError, MetamapError, TrainingInterrupted


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except TrainingInterrupted as exc:
        print(f"metamap: {exc} (add --resume to the same command)", file=sys.stderr)
        return 130
    except MetamapError as exc:
        print(f"metamap: error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metamap", description="Meta-learning and diffusion models for scientific and spatial data."
    )
    parser.add_argument("--version", action="version", version=f"metamap {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="meta-train a learner on a task family, then evaluate it")
    train.add_argument("--family", default="sinusoid", help="sinusoid | omniglot")
    train.add_argument("--data", help="data folder (omniglot: the folder holding images_background.npz)")
    train.add_argument("--learner", default="maml", help="maml | fomaml | metasgd | anil | reptile | protonet | matching | pretrain")
    train.add_argument("--n-way", type=int, default=5)
    train.add_argument("--k-shot", type=int, default=5)
    train.add_argument("--n-query", type=int, default=None, help="query examples per task (per class)")
    train.add_argument("--inner-steps", type=int, default=1)
    train.add_argument("--inner-lr", type=float, default=0.01)
    train.add_argument("--learn-inner-lr", action="store_true", help="MAML: learn per-step, per-tensor inner rates")
    train.add_argument("--chunk-size", type=int, default=None, help="tasks per vmap chunk (bounds memory)")
    train.add_argument("--hidden", type=int, nargs="+", default=None, help="MLP widths or Conv4 channels")
    train.add_argument("--steps", type=int, default=1000, help="meta-training steps")
    train.add_argument("--max-minutes", type=float, default=None,
                       help="wall-clock budget for the run, counted across --resume (stops with a checkpoint)")
    train.add_argument("--meta-batch", type=int, default=25, help="tasks per meta-step (over all processes)")
    train.add_argument("--lr", type=float, default=1e-3, help="outer (meta) learning rate")
    train.add_argument("--optimizer", default="adam", help="adam | sgd")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--val-every", type=int, default=0)
    train.add_argument("--checkpoint-every", type=int, default=500)
    train.add_argument("--episodes", type=int, default=600, help="test tasks for the final evaluation (0: skip)")
    train.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, metrics, evaluation")
    train.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")
    train.add_argument("--device", default="auto", help="auto | cpu | cuda (auto: the GPU when there is one)")
    train.add_argument("--no-progress", action="store_true")
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="evaluate a trained run on its family's test split")
    evaluate.add_argument("run", type=Path, help="run folder (or checkpoint folder)")
    evaluate.add_argument("--episodes", type=int, default=600)
    evaluate.add_argument("--n-way", type=int, default=None, help="test with another way than trained (metric learners)")
    evaluate.add_argument("--k-shot", type=int, default=None, help="test with another shot than trained")
    evaluate.add_argument("--n-query", type=int, default=None)
    evaluate.add_argument("--inner-steps", type=int, default=None, help="adaptation steps (gradient learners)")
    evaluate.add_argument("--seed", type=int, default=1234)
    evaluate.add_argument("--json", type=Path, default=None)
    evaluate.add_argument("--device", default="auto", help="auto | cpu | cuda")
    evaluate.set_defaults(handler=_evaluate)

    demo = commands.add_parser("demo", help="the main job on bundled data: forecasting new LA traffic sensors")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"))
    demo.add_argument("--quick", action="store_true", help="a seconds-long smoke version")
    demo.set_defaults(handler=_demo)

    bench = commands.add_parser("bench", help="run a benchmark; writes JSON (+ PNG)")
    bench.add_argument("name", help="sinusoid | speed | omniglot | traffic | geo | samplers | energy | astro | physics | mann | augment")
    bench.add_argument("--quick", action="store_true")
    bench.add_argument("--json", type=Path, required=True)
    bench.set_defaults(handler=_bench)

    from metamap.astro.commands import add_astro_parser
    from metamap.energy.commands import add_energy_parser
    from metamap.geo.commands import add_geo_parser
    from metamap.physics.commands import add_physics_parser
    from metamap.traffic.commands import add_traffic_parser

    for add_domain_parser in (add_traffic_parser, add_geo_parser, add_energy_parser, add_astro_parser, add_physics_parser):
        add_domain_parser(commands)
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
    from metamap.recipes import build_family, build_learner
    from metamap.training import TrainConfig, evaluate_learner, meta_train
    from metamap.training.distributed import distributed_session, pick_device

    run = run_config_from_args(args)
    config = TrainConfig(
        steps=args.steps, meta_batch=args.meta_batch, lr=args.lr, optimizer=args.optimizer, seed=args.seed,
        val_every=args.val_every, checkpoint_every=args.checkpoint_every, progress=not args.no_progress,
        max_seconds=args.max_minutes * 60 if args.max_minutes is not None else None,
    )
    device = pick_device(args.device)
    with distributed_session(device) as rank:
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
    from metamap.recipes import build_family, build_learner
    from metamap.training import evaluate_learner, load_checkpoint
    from metamap.training.checkpoint import load_learner_state
    from metamap.training.distributed import pick_device

    checkpoint = load_checkpoint(args.run)
    run = checkpoint.config.get("run")
    if not run:
        raise ConfigError(f"{args.run}: the checkpoint holds no run configuration; it was not written by metamap train")
    if run.get("kind") == "traffic":
        raise ConfigError(f"{args.run} is a traffic run; use metamap traffic adapt --run {args.run} --data ...")
    learner = build_learner(run)
    load_learner_state(learner, checkpoint, source=str(args.run))
    learner.to(pick_device(args.device))
    options = {"steps": args.inner_steps} if args.inner_steps is not None else {}
    overrides = {"n_way": args.n_way, "k_shot": args.k_shot, "n_query": args.n_query}
    family_spec = {**run["family"], **{k: v for k, v in overrides.items() if v is not None}}
    score = evaluate_learner(learner, build_family(family_spec).split("test"), args.episodes, args.seed, **options)
    print(f"{run['learner']['name']} on {family_spec} (step {checkpoint.step}): {score}")
    if args.json:
        _write(args.json, {"run": run, "test_family": family_spec, "step": checkpoint.step, "test": score.as_dict()})
    return 0


def _demo(args: argparse.Namespace) -> int:
    from metamap.demo import run_demo

    run_demo(args.out, quick=args.quick)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from metamap.bench import run_benchmark

    run_benchmark(args.name, args.quick, args.json)
    return 0


def _write(path: Path, payload: dict[str, Any]) -> None:
    from metamap.report import write_json

    write_json(path, payload)
    print(f"wrote {path}")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
