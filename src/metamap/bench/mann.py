"""Benchmark ``mann``: a memory-augmented neural network on Omniglot sequences and on traffic patterns.

Omniglot (Santoro et al. 2016, Table 1, 5 classes, one-hot labels)
-------------------------------------------------------------------
An episode is a sequence of 50 images: 5 characters drawn at random from the
split, 10 drawings of each, in random order; the labels 0..4 are assigned to
the characters at random per episode, and the label of step t is shown at
step t + 1. Accuracy by instance: the fraction of right predictions among the
steps that show a character for the 1st, 2nd, 3rd, 4th, 5th, 10th time; mean
and 95% interval over 600 test sequences (fixed seed), characters of the test
split only (1200..1622, never seen in training, see
:func:`metamap.tasks.omniglot_class_splits`).

The paper's MANN (LSTM controller) row reads 36.4 / 82.8 / 91.0 / 92.6 / 94.9 /
98.1 % (1st / 2nd / 3rd / 4th / 5th / 10th instance). The MAML paper's Table 1
quotes "MANN 82.8% (5-way 1-shot), 94.9% (5-way 5-shot)": those are the 2nd-
and 5th-instance columns (after one, resp. four, earlier labelled
presentations of the character, not five), which is how we compare. The row
is quoted from memory of the paper: the copies we could read showed only its
opening, not Table 1, so it has not been checked against the text.

What is the same as the paper: raw 20x20 pixels (ink fractions, flattened)
into the controller, LSTM 200, memory 128 x 40, 4 read heads, usage decay
0.95, meta-batches of 16 episodes, 5 x 10 test sequences, class augmentation
by 90-degree rotations (4 classes per character).
Where ours differs, because this trains for 40 minutes on one CPU core
(the paper: about 100,000 episodes):

- Adam at 3e-3 instead of RMSProp at 1e-4; gradients clipped at norm 10.
  Chosen on training loss in short trials (3 to 5 minutes each): raw pixels
  left the ln 5 plateau after ~300 meta-steps (0.25 s each), while a Conv4
  encoder (32 channels, with or without a LayerNorm after it) was still on it
  after 300 steps at 0.6 s each, so the paper's raw pixels were kept;
- learned key strengths (initialised at 10) on the cosine read, see
  :mod:`metamap.learners.mann`; without them (plain cosine) 5-way toy
  sequences reached ~0.55 at the 2nd instance after 400 steps, with them ~0.9;
- no random translation or small-angle rotation of the drawings (only the
  90-degree class rotations);
- the character split is MAML's 1100 / 100 / 423 in file order, not the
  paper's 1200 train / 423 test (the 100 validation characters are unused);
- the last checkpoint is tested (no model selection).

Traffic patterns (a non-image domain)
-------------------------------------
The protocol of :mod:`metamap.traffic.patterns`: sensor-day speed profiles of
METR-LA (source) labelled by the weak rule, train on 80% of its sensors;
sort the sensor-days of PeMS04 (target, 2 whole days) from K = 1 or 5
labelled days per pattern, averaged over 100 random draws of the labelled
days (the same draws for every method). ProtoNet is
:func:`~metamap.traffic.patterns.train_protonet`; MAML (second order, 5
inner steps of 0.1, settings fixed beforehand) uses the same
:class:`~metamap.traffic.patterns.ProfileEncoder` + ReLU + a linear head;
MANN the same encoder in front of its controller. All three: 500 meta-steps
of 16 episodes of every source pattern, 5 labelled + 5 query days each, Adam
(1e-3; MANN 3e-3 as on Omniglot). MAML and MANN are scored through
:func:`~metamap.traffic.patterns.few_shot_scores` with a small adapter
(:class:`SupportSequence`): the labelled days are read in a random order
(MANN reads a sequence; the patterns module lists them by pattern), and the
logits of patterns absent from the target are dropped (a 5-way head, 2-5
target patterns).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from metamap.bench.cache import load_cached, runs_folder, save_cached
from metamap.learners import MANN, make_learner
from metamap.learners.base import MetaLearner
from metamap.paths import shared_data_dir
from metamap.plotting import pyplot, save_png
from metamap.report import format_table, machine, mean_ci95, write_json
from metamap.seeding import seeded
from metamap.tasks import SequenceEpisodes, make_generator, omniglot_family
from metamap.tasks.sequence import accuracy_by_instance
from metamap.training import TrainConfig, meta_train
from metamap.training.metrics_log import read_records

INSTANCES = (1, 2, 3, 4, 5, 10)
PAPER = {1: 36.4, 2: 82.8, 3: 91.0, 4: 92.6, 5: 94.9, 10: 98.1}  # Santoro et al. 2016, Table 1, MANN (LSTM), 5 classes
TEST_SEQUENCES = 600
TEST_SEED = 1234
N_WAY, INSTANCES_PER_CLASS = 5, 10


@dataclass(frozen=True)
class OmniglotSettings:
    """How the Omniglot MANN is trained (JSON-able: stored with checkpoints and results)."""

    minutes: float = 40.0
    lr: float = 3e-3
    meta_batch: int = 16
    image_size: int = 20
    grad_clip: float = 10.0
    test_sequences: int = TEST_SEQUENCES


QUICK_OMNIGLOT = OmniglotSettings(minutes=0.05, test_sequences=20)


def omniglot_learner(settings: OmniglotSettings) -> MANN:
    """MANN on flattened pixels with the paper's controller and memory sizes, initialised from seed 0."""
    with seeded(0):
        return MANN(
            None,
            n_way=N_WAY,
            feature_dim=settings.image_size**2,
            hidden=200,
            memory_slots=128,
            memory_width=40,
            read_heads=4,
            gamma=0.95,
        )


def instance_scores(learner: MANN, family, n_sequences: int, seed: int, batch: int = 50) -> dict[str, Any]:
    """Accuracy by instance (percent, mean and 95% CI over sequences) on ``n_sequences`` of ``family``."""
    generator = make_generator(seed)
    rows = []
    with torch.no_grad():
        for start in range(0, n_sequences, batch):
            episode = family.sample(min(batch, n_sequences - start), generator)
            logits = learner.sequence_logits(episode.x_support, episode.y_support)
            rows.append(accuracy_by_instance(logits.argmax(-1) == episode.y_support, episode.y_support, INSTANCES))
    per_sequence = 100 * torch.cat(rows)
    scores = {}
    for i, k in enumerate(INSTANCES):
        mean, ci = mean_ci95(per_sequence[:, i])
        scores[str(k)] = {"mean": mean, "ci95": ci}
    return {"by_instance": scores, "sequences": n_sequences, "seed": seed}


def train_omniglot(data: Path, folder: Path, settings: OmniglotSettings) -> dict[str, Any]:
    """Train (resuming ``folder``) within the budget, test by instance, keep the result in ``folder``."""
    saved = folder / "result.json"
    plan = asdict(settings)
    previous = load_cached(saved, plan)
    if previous is not None:
        return previous
    family = SequenceEpisodes(
        omniglot_family(data, n_way=N_WAY, k_shot=INSTANCES_PER_CLASS, n_query=1, image_size=settings.image_size)
    )
    learner = omniglot_learner(settings)
    config = TrainConfig(
        steps=10**9,
        meta_batch=settings.meta_batch,
        lr=settings.lr,
        seed=0,
        log_every=20,
        checkpoint_every=100,
        grad_clip=settings.grad_clip,
        max_seconds=settings.minutes * 60,
    )
    print(f"[mann] omniglot: training for {settings.minutes:g} min (resumes from {folder} if present)")
    result = meta_train(learner, family, config, run_dir=folder, run_config={"omniglot": plan}, resume=True)
    test = instance_scores(learner, family.split("test"), settings.test_sequences, TEST_SEED)
    return save_cached(
        saved,
        plan,
        {
            "train_steps": result.final_step,
            "train_episodes": result.final_step * settings.meta_batch,
            "train_minutes": result.total_seconds / 60,
            "test": test,
        },
    )


# -- traffic patterns --------------------------------------------------------------------------


class SupportSequence:
    """Lets :func:`metamap.traffic.patterns.few_shot_scores` score any classifier of up to ``n_way`` classes.

    ``adapt(x_support [1, S, F], y_support [1, S])`` reads the support in a
    random order (drawn from ``generator``) and returns an object whose
    ``predict(x [1, Q, F])`` gives the logits of the support's classes only
    (``[1, Q, C]``, C = the largest support label + 1).
    """

    def __init__(self, learner: MetaLearner, generator: torch.Generator) -> None:
        self.learner = learner
        self.generator = generator

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        """The wrapped learner's: where they live is where the support goes."""
        return self.learner.parameters()

    def adapt(self, x_support: torch.Tensor, y_support: torch.Tensor) -> _FirstLogits:
        order = torch.randperm(y_support.shape[1], generator=self.generator)
        adapted = self.learner.adapt(x_support[:, order], y_support[:, order])
        return _FirstLogits(adapted, int(y_support.max()) + 1)


class _FirstLogits:
    def __init__(self, adapted, n_classes: int) -> None:
        self.adapted = adapted
        self.n_classes = n_classes

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapted.predict(x)[..., : self.n_classes]


@dataclass(frozen=True)
class TrafficSettings:
    steps: int = 500
    meta_batch: int = 16
    draws: int = 100
    shots: tuple[int, ...] = (1, 5)
    maml_inner_steps: int = 5
    maml_inner_lr: float = 0.1
    mann_lr: float = 3e-3


QUICK_TRAFFIC = TrafficSettings(steps=5, meta_batch=4, draws=5)


def traffic_comparison(data: Path, settings: TrafficSettings) -> dict[str, Any]:
    """Train ProtoNet, MAML and MANN on METR-LA sensor-days; score them on PeMS04's (see the module notes)."""
    from metamap.traffic import load_traffic
    from metamap.traffic.patterns import (
        PATTERNS,
        PatternEpisodes,
        ProfileEncoder,
        SpeedRule,
        few_shot_scores,
        sensor_days,
        sensor_splits,
        target_classes,
        train_protonet,
    )

    source = sensor_days(load_traffic(data / "metr-la-week.h5"))
    target = sensor_days(load_traffic(data / "PEMS04.npz", step_minutes=5))
    x = torch.from_numpy(source.filled())
    rule = SpeedRule()
    labels = torch.from_numpy(rule.label(source.profiles))
    family = PatternEpisodes(x, labels, sensor_splits(source.sensor, make_generator(0)), k_shot=5, n_query=5)
    bins, n_out = x.shape[1], len(PATTERNS)
    protonet, proto_summary = train_protonet(source, rule, seed=0, steps=settings.steps, meta_batch=settings.meta_batch)
    with seeded(0):
        maml = make_learner(
            "maml",
            nn.Sequential(ProfileEncoder(bins), nn.ReLU(), nn.Linear(64, n_out)),
            loss="cross_entropy",
            inner_steps=settings.maml_inner_steps,
            inner_lr=settings.maml_inner_lr,
        )
    with seeded(0):
        mann = MANN(ProfileEncoder(bins), n_way=n_out, feature_dim=64)
    seconds = {"protonet": proto_summary["seconds"]}
    for name, learner, lr, sequences in (("maml", maml, 1e-3, False), ("mann", mann, settings.mann_lr, True)):
        config = TrainConfig(
            steps=settings.steps,
            meta_batch=settings.meta_batch,
            lr=lr,
            seed=0,
            log_every=settings.steps,
            checkpoint_every=0,
            progress=False,
        )
        seconds[name] = meta_train(learner, SequenceEpisodes(family) if sequences else family, config).seconds
    x_target = torch.from_numpy(target.filled())
    target_labels = torch.from_numpy(rule.label(target.profiles))
    classes = {k: target_classes(target_labels.numpy(), k, PATTERNS) for k in settings.shots}
    scores: dict[str, dict[str, Any]] = {}
    for name, learner in (("protonet", protonet), ("maml", maml), ("mann", mann)):
        wrapped = learner if name == "protonet" else SupportSequence(learner, make_generator(7))
        by_k = few_shot_scores(wrapped, x_target, target_labels, classes, settings.draws, make_generator(2))
        for k, methods in by_k.items():  # the same draws for every learner: the generator restarts at seed 2
            scores.setdefault(k, {})[name] = methods["protonet"]
            scores[k].update({b: methods[b] for b in ("nearest_centroid", "knn1")})
    return {
        "source": "METR-LA (metr-la-week.h5)",
        "target": "PeMS04 (PEMS04.npz, speed)",
        "sensor_days": {"source": len(source), "target": len(target)},
        "target_classes": {str(k): [PATTERNS[c] for c in c_k] for k, c_k in classes.items()},
        "settings": asdict(settings),
        "train_seconds": seconds,
        "accuracy": scores,
        "labels": "weak: the rule of metamap.traffic.patterns.label_profiles",
    }


# -- the benchmark -----------------------------------------------------------------------------


def run(quick: bool, json_path: Path) -> dict[str, Any]:
    """Omniglot by instance (resumable, under :func:`~metamap.bench.cache.runs_folder`), then the traffic comparison."""
    torch.set_num_threads(1)
    data = shared_data_dir()
    runs_dir = runs_folder(json_path, quick)
    omniglot = train_omniglot(data / "omniglot", runs_dir / "omniglot", QUICK_OMNIGLOT if quick else OmniglotSettings())
    traffic = traffic_comparison(data / "traffic", QUICK_TRAFFIC if quick else TrafficSettings())
    by_instance = omniglot["test"]["by_instance"]
    headline: dict[str, Any] = {f"mann_5w_{_ordinal(k)}_instance": by_instance[str(k)]["mean"] for k in INSTANCES}
    headline["goal_2nd_instance_at_least_82.8"] = by_instance["2"]["mean"] >= PAPER[2]
    headline["omniglot_train_episodes"] = omniglot["train_episodes"]
    headline["omniglot_train_minutes"] = omniglot["train_minutes"]
    for k, methods in traffic["accuracy"].items():
        for name in ("mann", "maml", "protonet"):
            headline[f"{name}_traffic_patterns_acc_{k}shot"] = 100 * methods[name]["mean"]
            headline[f"{name}_traffic_patterns_bacc_{k}shot"] = 100 * methods[name]["balanced_mean"]
    # plain accuracy rewards naming the commonest pattern (free flow) for every day: the balanced one is the headline
    most = str(max(traffic["settings"]["shots"]))
    headline["mann_traffic_patterns_balanced_acc"] = headline[f"mann_traffic_patterns_bacc_{most}shot"]
    headline["traffic_patterns_chance_balanced_acc"] = 100 / len(traffic["target_classes"][most])
    result = {
        "benchmark": "mann",
        "quick": quick,
        "headline": headline,
        "paper": {str(k): v for k, v in PAPER.items()},
        "maml_paper_quotes": {"5w1s": "82.8 = 2nd instance", "5w5s": "94.9 = 5th instance"},
        "omniglot": omniglot,
        "traffic": traffic,
        "machine": machine(),
        "notes": __doc__,
    }
    write_json(json_path, result)
    rows = [
        [_ordinal(k), f"{by_instance[str(k)]['mean']:.1f} ± {by_instance[str(k)]['ci95']:.1f}", PAPER[k]]
        for k in INSTANCES
    ]
    print(format_table(["instance", "MANN accuracy % (95% CI)", "paper"], rows))
    trows = [
        [
            f"K={k}",
            name,
            f"{100 * s['mean']:.1f} ± {100 * s['ci95']:.1f}",
            f"{100 * s['balanced_mean']:.1f} ± {100 * s['balanced_ci95']:.1f}",
        ]
        for k, methods in traffic["accuracy"].items()
        for name, s in methods.items()
    ]
    print(format_table(["labelled days", "method", "accuracy %", "balanced accuracy %"], trows))
    _plot(result, runs_dir / "omniglot", json_path.with_suffix(".png"))
    return result


def _ordinal(k: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(k, f"{k}th")


def _plot(result: dict[str, Any], run_dir: Path, path: Path) -> None:
    """Accuracy by instance (ours with 95% CI, the paper's as markers), the traffic comparison, training loss."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    by_instance = result["omniglot"]["test"]["by_instance"]
    ax = axes[0]
    ax.errorbar(
        INSTANCES,
        [by_instance[str(k)]["mean"] for k in INSTANCES],
        yerr=[by_instance[str(k)]["ci95"] for k in INSTANCES],
        marker="o",
        capsize=3,
        label="ours (95% CI)",
    )
    ax.plot(INSTANCES, [PAPER[k] for k in INSTANCES], "kx", markersize=9, label="Santoro et al. 2016")
    ax.set_xlabel("instance (presentation of the character)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Omniglot, 5 classes x 10 ({result['omniglot']['test']['sequences']} test sequences)")
    ax.set_ylim(0, 100)
    ax.legend()
    ax = axes[1]
    accuracy = result["traffic"]["accuracy"]
    methods = list(next(iter(accuracy.values())))
    width = 0.8 / len(methods)
    for i, name in enumerate(methods):
        positions = [j + i * width for j in range(len(accuracy))]
        ax.bar(
            positions,
            [100 * accuracy[k][name]["balanced_mean"] for k in accuracy],
            width,
            yerr=[100 * accuracy[k][name]["balanced_ci95"] for k in accuracy],
            capsize=2,
            label=name,
        )
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(accuracy))], [f"K = {k}" for k in accuracy])
    ax.set_ylabel("balanced accuracy (%)")
    ax.set_title("traffic patterns, METR-LA -> PeMS04")
    ax.legend(fontsize=7)
    ax = axes[2]
    records = read_records(run_dir)
    if records:
        ax.plot(
            [r["step"] * result["omniglot"]["settings"]["meta_batch"] / 1000 for r in records],
            [r["train_loss"] for r in records],
            marker=".",
        )
    ax.set_xlabel("training episodes (thousands)")
    ax.set_ylabel("training loss (cross-entropy per step)")
    ax.set_title("Omniglot MANN training")
    fig.tight_layout()
    save_png(fig, path)
