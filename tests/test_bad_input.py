"""User mistakes raise metamap's own error types, with messages naming what was expected and what came."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import metamap
from metamap.errors import CheckpointError, ConfigError, DataError, MetamapError, ShapeError, describe
from metamap.learners import LEARNERS, AdaptOptions, make_learner
from metamap.nn import MLP
from metamap.tasks.episode import Episode
from metamap.tasks.family import check_split, make_generator
from metamap.tasks.sinusoid import Sinusoid
from metamap.training import TrainConfig, meta_train


@pytest.fixture
def sinusoid_episode() -> Episode:
    return Sinusoid(k_shot=3, n_query=4).sample(2, make_generator(0))


def _class_episode(n_way: int = 3, k: int = 2, features: int = 4) -> Episode:
    gen = make_generator(1)
    x = torch.randn(2, n_way * k, features, generator=gen)
    y = torch.arange(n_way).repeat_interleave(k).expand(2, -1).contiguous()
    return Episode(x, y, x.clone(), y.clone())


class _Fixed:
    """A task family that draws the same episode every time (to train on one crafted episode)."""

    split_name = "train"

    def __init__(self, episode: Episode) -> None:
        self.episode = episode

    def split(self, name: str) -> _Fixed:
        return self

    def sample(self, n_tasks: int, generator: torch.Generator) -> Episode:
        return self.episode


def _train_one_step(learner, episode: Episode) -> None:
    """The training loop is where meta_loss meets its data: it checks the model once, before its first step."""
    meta_train(learner, _Fixed(episode), TrainConfig(steps=1, meta_batch=2, checkpoint_every=0, progress=False))


def _use(learner, verb: str, episode: Episode) -> None:
    """Hand ``episode`` to ``learner`` through one of the boundaries that validate it."""
    if verb == "meta_train":
        _train_one_step(learner, episode)
    elif verb == "adapt":
        learner.adapt(episode.x_support, episode.y_support)
    else:
        learner.evaluate(episode)


def test_error_hierarchy():
    for kind in (ShapeError, DataError, ConfigError, CheckpointError):
        assert issubclass(kind, MetamapError)
        assert getattr(metamap, kind.__name__) is kind
    for kind in (ShapeError, DataError, ConfigError):
        assert issubclass(kind, ValueError)
    assert describe(torch.zeros(25, 5, 1)) == "float32[25, 5, 1]"


# -- model vs episode -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["maml", "fomaml", "metasgd", "anil", "reptile", "pretrain"])
@pytest.mark.parametrize("verb", ["meta_train", "evaluate", "adapt"])
def test_model_input_size_mismatch_is_shape_error(name, verb, sinusoid_episode):
    learner = make_learner(name, MLP(3, [8], 1))
    with pytest.raises(
        ShapeError,
        match=r"cannot take this episode's inputs: one example is float32\[1\].*"
        r"x_support float32\[2, 3, 1\].*3x8",
    ):
        _use(learner, verb, sinusoid_episode)


def test_model_output_size_mismatch_is_shape_error(sinusoid_episode):
    learner = make_learner("maml", MLP(1, [8], 2))
    with pytest.raises(
        ShapeError,
        match=r"model outputs float32\[2\] per example but the episode's targets "
        r"are float32\[1\] per example",
    ):
        _train_one_step(learner, sinusoid_episode)


def test_too_few_logits_is_shape_error():
    learner = make_learner("maml", MLP(4, [8], 2), loss="cross_entropy")
    with pytest.raises(ShapeError, match=r"outputs 2 logits per example but the episode has labels up to 2"):
        _train_one_step(learner, _class_episode(n_way=3))


def test_mse_with_class_labels_is_shape_error():
    learner = make_learner("maml", MLP(4, [8], 1), loss="mse")
    with pytest.raises(ShapeError, match=r"loss 'mse' needs float targets.*class labels int64\[2, 6\]"):
        _train_one_step(learner, _class_episode())


@pytest.mark.parametrize("name", ["maml", "protonet", "matching"])
def test_cross_entropy_with_float_targets_is_shape_error(name, sinusoid_episode):
    options = {"loss": "cross_entropy"} if name == "maml" else {}
    learner = make_learner(name, MLP(1, [8], 2), **options)
    with pytest.raises(
        ShapeError,
        match=r"'cross_entropy' needs int64 class labels \[tasks, examples\], "
        r"got float32\[2, 3, 1\]",
    ):
        _train_one_step(learner, sinusoid_episode)


def test_model_dtype_mismatch_is_shape_error(sinusoid_episode):
    learner = make_learner("maml", MLP(1, [8], 1).double())
    with pytest.raises(ShapeError, match="cannot take this episode's inputs"):
        _train_one_step(learner, sinusoid_episode)


def test_check_runs_for_each_new_input_signature():
    # A learner that has seen one episode must still check an episode of another shape.
    learner = make_learner("maml", MLP(1, [8], 1))
    learner.evaluate(Sinusoid().sample(2, make_generator(0)))
    x = torch.zeros(2, 3, 2)
    with pytest.raises(ShapeError, match=r"one example is float32\[2\]"):
        learner.evaluate(Episode(x, torch.zeros(2, 3, 1), x, torch.zeros(2, 3, 1)))


# -- configuration -----------------------------------------------------------------------


def test_unknown_learner_is_config_error():
    with pytest.raises(ConfigError, match=r"unknown learner 'mamal'; expected one of maml, fomaml"):
        make_learner("mamal", MLP(1, [8], 1))


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_unknown_learner_option_is_config_error(name):
    with pytest.raises(ConfigError, match=rf"learner '{name}' has no option\(s\) \['inner_step'\]; it takes \["):
        make_learner(name, MLP(1, [8], 1), inner_step=3)


def test_make_learner_lists_real_options():
    with pytest.raises(ConfigError, match=r"it takes \[.*'first_order'.*'inner_lr'.*'inner_steps'.*'learn_inner_lr'"):
        make_learner("maml", MLP(1, [8], 1), bogus=1)
    # FOMAML's first_order is fixed by its name.
    with pytest.raises(ConfigError, match=r"no option\(s\) \['first_order'\]"):
        make_learner("fomaml", MLP(1, [8], 1), first_order=False)
    with pytest.raises(ConfigError, match=r"'matching' has no option\(s\) \['inner_lr'\].*'scale'"):
        make_learner("matching", MLP(1, [8], 1), inner_lr=0.1)
    assert make_learner("matching", MLP(1, [8], 2), scale=3.0).scale == 3.0


def test_invalid_learner_option_values_are_config_errors():
    with pytest.raises(
        ConfigError, match=r"unknown loss 'l2'; expected one of mse, mae, huber, cross_entropy or a callable"
    ):
        make_learner("maml", MLP(1, [8], 1), loss="l2")
    with pytest.raises(ConfigError, match=r"chunk_size must be >= 1 or None, got 0"):
        make_learner("maml", MLP(1, [8], 1), chunk_size=0)
    with pytest.raises(ConfigError, match=r"inner_steps must be >= 0, got -1"):
        make_learner("maml", MLP(1, [8], 1), inner_steps=-1)
    with pytest.raises(ConfigError, match=r"adapt_prefixes \('encoder\.',\) match no parameter.*'0\.weight'"):
        make_learner("maml", MLP(1, [8], 1), adapt_prefixes=("encoder.",))
    with pytest.raises(ConfigError, match="has no head_prefix"):
        make_learner("anil", nn.Sequential(nn.Linear(1, 1)))
    with pytest.raises(ConfigError, match=r"unknown activation 'sigmoid'"):
        MLP(1, [8], 1, activation="sigmoid")


def test_unknown_split_is_config_error():
    with pytest.raises(ConfigError, match=r"unknown split 'validation'; expected one of train, val, test"):
        Sinusoid().split("validation")
    with pytest.raises(ConfigError, match=r"unknown split 'dev'"):
        Sinusoid(split_name="dev")
    with pytest.raises(ConfigError, match=r"unknown split 'Train'"):
        check_split("Train")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k_shot": 0}, r"k_shot and n_query must be >= 1, got k_shot=0, n_query=10"),
        ({"n_query": -2}, r"got k_shot=5, n_query=-2"),
        ({"amplitude": (5.0, 0.1)}, r"amplitude range must have low < high, got \(5.0, 0.1\)"),
        ({"phase": (1.0, 1.0)}, r"phase range must have low < high"),
        ({"x_range": (5.0, -5.0)}, r"x_range range must have low < high"),
    ],
)
def test_invalid_sinusoid_config_is_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Sinusoid(**kwargs)


def test_sinusoid_zero_tasks_is_config_error():
    with pytest.raises(ConfigError, match=r"n_tasks must be >= 1, got 0"):
        Sinusoid().sample(0, make_generator(0))


# -- data -----------------------------------------------------------------------------------


def test_nan_in_episode_is_data_error():
    ep = Sinusoid(k_shot=3, n_query=4).sample(2, make_generator(0))
    y = ep.y_query.clone()
    y[0, 1, 0] = float("nan")
    y[1, 2, 0] = float("nan")
    with pytest.raises(DataError, match=r"Episode\.y_query holds 2 NaN/inf value\(s\); expected finite numbers"):
        Episode(ep.x_support, ep.y_support, ep.x_query, y)


def test_episode_shape_errors_name_expected_and_got():
    with pytest.raises(ShapeError, match=r"support_mask: expected bool\[2, 3\] or bool\[2, 3, 1\], got int64\[2, 3\]"):
        Episode(
            torch.zeros(2, 3, 1),
            torch.zeros(2, 3, 1),
            torch.zeros(2, 4, 1),
            torch.zeros(2, 4, 1),
            support_mask=torch.ones(2, 3, dtype=torch.long),
        )


@pytest.mark.parametrize("name", sorted(set(LEARNERS) - {"gated"}))  # the gated optimizer uses every option
def test_adapt_options_a_learner_does_not_use_are_config_errors(name):
    learner = make_learner(name, MLP(4, [8], 3), **({"feature_dim": 3} if name == "mann" else {}))
    known = "none" if name in ("mann", "protonet", "matching") else "steps"
    with pytest.raises(ConfigError, match=rf"\.adapt takes no option\(s\) \['gated'\]; its options: {known}$"):
        learner.evaluate(_class_episode(), AdaptOptions(gated=False))
    with pytest.raises(ConfigError, match=r"\.adapt takes no option\(s\) \['gated'\]"):
        learner.adapt(torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.long), options=AdaptOptions(gated=True))


def test_unknown_adapt_option_names_the_known_ones():
    with pytest.raises(
        ConfigError, match=r"unknown adapt option\(s\) \['step'\]; the adapt options are \['steps', 'gated'\]"
    ):
        AdaptOptions.from_mapping({"step": 3})
    assert AdaptOptions.from_mapping({"steps": 3}) == AdaptOptions(steps=3)
    with pytest.raises(ConfigError, match=r"steps must be a whole number >= 0, got -1"):
        AdaptOptions(steps=-1)


def test_anil_rejects_adapt_prefixes_with_config_error():
    # ANIL fixes what it adapts (the head); adapt_prefixes used to escape as a raw TypeError.
    with pytest.raises(ConfigError, match=r"ANIL adapts only the model's head.*adapt_prefixes=\('0\.',\)"):
        make_learner("anil", MLP(1, [8], 1), adapt_prefixes=("0.",))


def test_query_labels_outside_the_support_classes_are_refused():
    x = torch.zeros(1, 2, 3)
    with pytest.raises(DataError, match=r"expected class indices in 0\.\.1 .*query 0\.\.4"):
        Episode(x, torch.tensor([[0, 1]]), x, torch.tensor([[0, 4]]))
    with pytest.raises(DataError, match="support -1..1"):
        Episode(x, torch.tensor([[-1, 1]]), x, torch.tensor([[0, 1]]))


def test_shard_arguments_are_checked():
    episode = Sinusoid().sample(4, make_generator(0))
    with pytest.raises(ShapeError, match="rank=2, world_size=2"):
        episode.shard(2, 2)
    with pytest.raises(ShapeError, match="world_size=0"):
        episode.shard(0, 0)


@pytest.mark.parametrize("name", ["maml", "anil", "protonet"])
def test_adapt_on_raw_tensors_validates_the_model(name):
    model = MLP(3, [8], 1) if name != "protonet" else MLP(3, [8], 4)
    learner = make_learner(name, model)
    x = torch.zeros(2, 5, 1)
    y = torch.zeros(2, 5, 1) if name != "protonet" else torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ShapeError, match="cannot take this episode's inputs"):
        learner.adapt(x, y)


@pytest.mark.parametrize("name", ["mann", "gated"])
def test_learners_the_train_recipes_cannot_build_are_refused_by_name(name):
    from metamap.recipes import build_learner

    with pytest.raises(
        ConfigError, match=rf"learner '{name}' is built in Python with make_learner; expected one of maml"
    ):
        build_learner({"family": {"name": "sinusoid"}, "learner": {"name": name}, "seed": 0})
