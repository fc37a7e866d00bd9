"""Build a task family, a backbone and a learner from a plain, JSON-able run configuration.

A run configuration is what a checkpoint stores so that ``metamap evaluate``
can rebuild the exact model later::

    {"family": {"name": "sinusoid", "k_shot": 5, "n_query": 10},
     "model": {"hidden": [40, 40]},
     "learner": {"name": "maml", "inner_steps": 1, "inner_lr": 0.01},
     "seed": 0}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from metamap.errors import ConfigError
from metamap.learners import LEARNERS, make_learner
from metamap.learners.base import MetaLearner
from metamap.learners.metric import EmbeddingLearner
from metamap.nn import MLP, Conv4
from metamap.seeding import seeded
from metamap.tasks.family import TaskFamily
from metamap.tasks.sinusoid import Sinusoid

FAMILIES = ("sinusoid", "omniglot")
EMBEDDING_LEARNERS = ("protonet", "matching")
# MANN reads shuffled sequences with an embedding encoder and the gated optimizer takes other
# options (lr, base) than the inner-loop flags: both are built in Python with make_learner.
RECIPE_LEARNERS = tuple(name for name in LEARNERS if name not in ("mann", "gated"))


def build_family(spec: dict[str, Any]) -> TaskFamily:
    """``{"name": "sinusoid", ...Sinusoid fields}`` or ``{"name": "omniglot", "data": folder, n_way, k_shot, n_query}``."""
    options = dict(spec)
    name = options.pop("name", None)
    if name == "sinusoid":
        return Sinusoid(**_known(options, ("k_shot", "n_query"), "sinusoid family"))
    if name == "omniglot":
        from metamap.tasks.omniglot import omniglot_family

        options = _known(options, ("data", "n_way", "k_shot", "n_query", "image_size"), "omniglot family")
        if not options.get("data"):
            raise ConfigError("the omniglot family needs --data FOLDER (holding images_background.npz)")
        check_family_spec(spec)
        return omniglot_family(Path(options.pop("data")), **options)
    raise ConfigError(f"unknown task family {name!r}; expected one of {', '.join(FAMILIES)}")


def build_model(run: dict[str, Any]) -> nn.Module:
    """The backbone for the run's family and learner, initialised from ``run["seed"]``."""
    family, model, learner = run["family"], run.get("model", {}), run["learner"]["name"]
    with seeded(int(run.get("seed", 0))):
        if family["name"] == "sinusoid":
            return MLP(1, list(model.get("hidden", [40, 40])), 1)
        embedding = learner in EMBEDDING_LEARNERS
        return Conv4(
            in_channels=1,
            hidden=int(model.get("hidden", 64)),
            n_out=None if embedding else int(family.get("n_way", 5)),
            image_size=int(family.get("image_size", 28)),
        )


def build_learner(run: dict[str, Any]) -> MetaLearner:
    """The learner named in ``run["learner"]`` around :func:`build_model`'s backbone."""
    spec = dict(run["learner"])
    name = spec.pop("name")
    if name not in RECIPE_LEARNERS:
        what = (
            f"learner {name!r} is built in Python with make_learner"
            if name in LEARNERS
            else f"unknown learner {name!r}"
        )
        raise ConfigError(f"{what}; expected one of {', '.join(RECIPE_LEARNERS)}")
    if name not in EMBEDDING_LEARNERS and run["family"]["name"] != "sinusoid":
        spec.setdefault("loss", "cross_entropy")
    learner = make_learner(name, build_model(run), **spec)
    if isinstance(learner, EmbeddingLearner) and run["family"]["name"] == "sinusoid":
        raise ConfigError(f"learner {name!r} classifies; the sinusoid family is regression")
    return learner


def batch_memory(run: dict[str, Any], n_tasks: int, training: bool) -> int:
    """Lower estimate, in bytes, of the memory a batch of ``n_tasks`` episodes of ``run`` takes in its model.

    Counts the float32 inputs and, per example, two copies of every layer's
    output (the layer and its normalisation or nonlinearity, kept for the
    backward pass; Conv4 halves the image at each of its four blocks).
    Meta-training a gradient learner keeps them once more per inner step (it
    backpropagates through the adaptation). Real use is higher (a third copy
    before pooling, weights, optimiser, allocator), so a batch this estimate
    refuses could never run.
    """
    family, model, learner = run["family"], run.get("model", {}), run["learner"]
    shots = int(family["k_shot"]) + int(family["n_query"])
    if family["name"] == "sinusoid":
        examples, inputs = shots, 1
        outputs = sum(int(h) for h in model.get("hidden", [40, 40])) + 1
    else:
        size = int(family.get("image_size", 28))
        examples, inputs = int(family.get("n_way", 5)) * shots, size * size
        outputs = sum(int(model.get("hidden", 64)) * (size // 2**block) ** 2 for block in range(4))
    kept = 1 + int(learner.get("inner_steps", 0)) if training and learner["name"] not in EMBEDDING_LEARNERS else 1
    return 4 * n_tasks * examples * (inputs + 2 * outputs * kept)


def check_family_spec(spec: dict[str, Any]) -> None:
    """Refuse, before any data are read, a way or shot the family's meta-train or meta-test split cannot provide."""
    if spec.get("name") != "omniglot":
        return
    from metamap.tasks.omniglot import DRAWERS, omniglot_class_splits

    n_way, k_shot, n_query = (
        int(spec.get(k, default)) for k, default in (("n_way", 5), ("k_shot", 1), ("n_query", 15))
    )
    for split in ("train", "test"):
        classes = omniglot_class_splits()[split].numel()
        if n_way > classes:
            raise ConfigError(f"omniglot: --n-way {n_way} exceeds the {classes} classes of the {split} split")
    if k_shot + n_query > DRAWERS:
        raise ConfigError(
            f"omniglot: --k-shot + --n-query = {k_shot} + {n_query} exceeds the {DRAWERS} drawings of each character"
        )


def _known(options: dict[str, Any], allowed: tuple[str, ...], what: str) -> dict[str, Any]:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"{what}: unknown option(s) {unknown}; expected some of {list(allowed)}")
    return options
