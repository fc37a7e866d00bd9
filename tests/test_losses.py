"""Training losses: built-in names, custom callables, masks, gradients, and what a run records of them."""

from __future__ import annotations

import pytest
import torch

from metamap.errors import CheckpointError, ConfigError
from metamap.learners import MAML, make_learner
from metamap.learners.losses import LOSSES, cross_entropy, huber, mae, mse, per_task_loss, resolve_loss
from metamap.nn import MLP
from metamap.tasks import Sinusoid
from metamap.tasks.family import make_generator
from metamap.training import TrainConfig, load_checkpoint, meta_train


def _values(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=make_generator(seed), dtype=torch.float64)


def test_known_values():
    prediction = torch.tensor([[0.0], [3.0], [-0.5]], dtype=torch.float64)
    target = torch.tensor([[1.0], [0.0], [0.0]], dtype=torch.float64)
    # errors 1, 3, 0.5: squared 1, 9, 0.25; Huber (delta 1) 0.5, 2.5, 0.125
    assert float(mse(prediction, target, None)) == pytest.approx((1 + 9 + 0.25) / 3)
    assert float(mae(prediction, target, None)) == pytest.approx((1 + 3 + 0.5) / 3)
    assert float(huber(prediction, target, None)) == pytest.approx((0.5 + 2.5 + 0.125) / 3)
    keep = torch.tensor([True, False, True])
    assert float(mae(prediction, target, keep)) == pytest.approx((1 + 0.5) / 2)
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    expected = (-torch.log_softmax(logits, -1)[[0, 1], [0, 1]]).mean()
    assert float(cross_entropy(logits, labels, None)) == pytest.approx(float(expected))


@pytest.mark.parametrize("name", ["mse", "mae", "huber"])
def test_gradient_matches_finite_differences(name):
    loss = LOSSES[name]
    # errors kept away from 0 (MAE's kink) and from +-1 (Huber's): the loss is smooth around each point
    target = _values(1, 6, 2)
    prediction = (
        target + torch.tensor([0.3, -0.6, 1.7, -2.2, 0.45, -1.4], dtype=torch.float64)[:, None]
    ).requires_grad_()
    mask = torch.tensor([True, True, False, True, True, True])
    (grad,) = torch.autograd.grad(loss(prediction, target, mask), prediction)
    step = 1e-6
    numeric = torch.zeros_like(prediction)
    for index in range(prediction.numel()):
        bump = torch.zeros(prediction.numel(), dtype=torch.float64)
        bump[index] = step
        bump = bump.view_as(prediction)
        with torch.no_grad():
            up, down = loss(prediction + bump, target, mask), loss(prediction - bump, target, mask)
        numeric.view(-1)[index] = (up - down) / (2 * step)
    torch.testing.assert_close(grad, numeric, rtol=1e-6, atol=1e-8)
    assert bool((grad[2] == 0).all())  # the masked example gets no gradient


@pytest.mark.parametrize("name", ["mse", "mae", "huber"])
@pytest.mark.parametrize("per_value", [False, True])
def test_masked_entries_change_nothing(name, per_value):
    loss = LOSSES[name]
    prediction, target = _values(2, 3, 5, 4), _values(3, 3, 5, 4)
    mask = torch.rand(3, 5, *((4,) if per_value else ()), generator=make_generator(4)) > 0.4
    hidden = ~mask if per_value else (~mask)[..., None].expand_as(target)
    changed_prediction = torch.where(hidden, prediction + 100.0, prediction)
    changed_target = torch.where(hidden, torch.full_like(target, -7.0), target)
    before = per_task_loss(loss, prediction, target, mask)
    after = per_task_loss(loss, changed_prediction, changed_target, mask)
    torch.testing.assert_close(before, after, rtol=0, atol=0)
    leaf = prediction.clone().requires_grad_()
    (grad,) = torch.autograd.grad(per_task_loss(loss, leaf, target, mask).sum(), leaf)
    assert bool((grad[hidden] == 0).all()) and bool((grad[~hidden] != 0).any())


def test_batched_built_ins_equal_one_task_at_a_time():
    prediction, target = _values(5, 4, 6, 3), _values(6, 4, 6, 3)
    mask = torch.rand(4, 6, generator=make_generator(7)) > 0.3
    for loss in (mse, mae, huber):
        per_task = per_task_loss(loss, prediction, target, mask)
        one_by_one = torch.stack([loss(prediction[t], target[t], mask[t]) for t in range(4)])
        torch.testing.assert_close(per_task, one_by_one, rtol=1e-12, atol=0)


def test_custom_callable_is_applied_per_task():
    def smooth_l1(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        values = torch.nn.functional.smooth_l1_loss(prediction, target, reduction="none").mean(-1)
        weights = torch.ones_like(values) if mask is None else mask.to(values.dtype)
        return (values * weights).sum() / weights.sum()

    prediction, target = _values(8, 3, 5, 2), _values(9, 3, 5, 2)
    mask = torch.rand(3, 5, generator=make_generator(10)) > 0.3
    expected = torch.stack([smooth_l1(prediction[t], target[t], mask[t]) for t in range(3)])
    torch.testing.assert_close(per_task_loss(smooth_l1, prediction, target, mask), expected)
    # Huber with delta 1 is smooth L1 with beta 1: the named built-in agrees with the callable.
    torch.testing.assert_close(per_task_loss(huber, prediction, target, mask), expected)


def _gaussian_nll(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean and log-variance per example (``prediction [N, 2]``) against ``target [N, 1]``."""
    mean, log_var = prediction[:, :1], prediction[:, 1:]
    values = (0.5 * (log_var + (target - mean) ** 2 / log_var.exp())).mean(-1)
    weights = torch.ones_like(values) if mask is None else mask.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp(min=1.0)


def test_a_learner_trains_on_a_custom_gaussian_nll():
    torch.manual_seed(0)
    learner = MAML(MLP(1, [32, 32], 2), loss=_gaussian_nll, inner_steps=1, inner_lr=0.01)
    assert learner.loss_name is None
    family = Sinusoid(k_shot=5, n_query=10)
    episode = family.sample(8, make_generator(1))
    before = float(learner.meta_loss(episode).detach())
    meta_train(learner, family, TrainConfig(steps=60, meta_batch=8, lr=3e-3, checkpoint_every=0, progress=False))
    assert float(learner.meta_loss(episode).detach()) < before


def test_named_losses_resolve_and_unknown_ones_are_refused():
    assert resolve_loss("huber") is huber and resolve_loss(mae) is mae
    assert make_learner("maml", MLP(1, [8], 1), loss="mae").loss_name == "mae"
    with pytest.raises(ConfigError, match=r"expected a name \(mse, mae, huber, cross_entropy\) or a callable"):
        make_learner("maml", MLP(1, [8], 1), loss=3)


RUN_CONFIG = {"learner": {"name": "maml"}}
TRAIN = TrainConfig(steps=2, meta_batch=2, checkpoint_every=1, progress=False)


def test_a_run_records_its_loss_and_refuses_to_resume_with_another(tmp_path):
    torch.manual_seed(0)
    meta_train(make_learner("maml", MLP(1, [8], 1), loss="huber"), Sinusoid(), TRAIN, run_dir=tmp_path)
    assert load_checkpoint(tmp_path).config["loss"] == "huber"
    torch.manual_seed(0)
    other = make_learner("maml", MLP(1, [8], 1), loss="mse")
    with pytest.raises(CheckpointError, match=r"trained with loss 'huber', this learner's loss is 'mse'"):
        meta_train(other, Sinusoid(), TRAIN, run_dir=tmp_path, resume=True)


def test_a_run_with_an_unnamed_loss_cannot_be_saved_or_resumed(tmp_path):
    learner = make_learner("maml", MLP(1, [8], 2), loss=_gaussian_nll)
    for resume in (False, True):
        with pytest.raises(ConfigError, match=r"a run folder needs a loss with a name .* train it without run_dir"):
            meta_train(learner, Sinusoid(), TRAIN, run_dir=tmp_path, resume=resume)
    assert not (tmp_path / "checkpoints").exists()
