"""The adaptation guard: a task whose adaptation fits its support worse (or NaN) is predicted from the start."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from metamap.experiment.guard import guard, support_mse
from metamap.learners import make_learner
from metamap.nn import MLP


class Constant:
    """Predicts ``values [T]`` for every query of task t."""

    def __init__(self, values):
        self.values = torch.tensor(values, dtype=torch.float32)

    def predict(self, x):
        return self.values.view(-1, 1, 1).expand(len(self.values), x.shape[1], 1).clone()


def test_each_task_keeps_the_adaptation_only_where_its_support_fit_is_no_worse():
    x, y = torch.zeros(3, 4, 2), torch.ones(3, 4, 1)
    start = Constant([0.0, 0.0, 0.0])
    adapted = Constant([1.0, 5.0, float("nan")])  # better, worse, diverged
    guarded = guard(start, adapted, x, y)
    assert guarded.kept.tolist() == [True, False, False] and guarded.fallbacks == 2
    assert guarded.predict(torch.zeros(3, 2, 2))[:, 0, 0].tolist() == [1.0, 0.0, 0.0]


def test_the_support_error_counts_only_what_the_mask_keeps():
    x, y = torch.zeros(2, 3, 1), torch.tensor([[[0.0], [0.0], [100.0]], [[1.0], [1.0], [1.0]]])
    mask = torch.tensor([[[True], [True], [False]], [[False], [False], [False]]])
    torch.testing.assert_close(support_mse(Constant([0.0, 0.0]), x, y, mask), torch.tensor([0.0, 0.0]))
    torch.testing.assert_close(support_mse(Constant([0.0, 0.0]), x, y, None), torch.tensor([10000 / 3, 1.0]))


def test_a_traffic_sensor_whose_adaptation_blows_up_is_forecast_by_the_unadapted_network():
    from metamap.traffic.experiment import Adapted

    torch.manual_seed(0)
    learner = make_learner("maml", MLP(6, [8], 3), inner_steps=1, inner_lr=0.05)
    x, y = torch.randn(2, 10, 6), torch.randn(2, 10, 3)
    x[1, 0] = 1e5  # one wild window on sensor 1
    target = SimpleNamespace(
        support_set=(x, y, torch.ones_like(y, dtype=torch.bool)), test_inputs=x, readings=lambda forecasts: forecasts
    )
    method, unadapted = Adapted(learner), Adapted(learner)
    method.adapt(target, steps=10)
    unadapted.adapt(target, steps=0)
    assert method.fallbacks == 1 and unadapted.fallbacks == 0
    forecasts, start = method.predict(target), unadapted.predict(target)
    assert torch.isfinite(forecasts).all()
    torch.testing.assert_close(forecasts[1], start[1])
    assert not torch.allclose(forecasts[0], start[0])


def test_a_learner_behind_the_method_protocol_falls_back_per_task_and_metric_learners_pass_through():
    from metamap.experiment import AdaptedLearner

    torch.manual_seed(0)
    learner = make_learner("maml", MLP(6, [8], 3), inner_steps=1, inner_lr=0.05)
    x, y = torch.randn(2, 10, 6), torch.randn(2, 10, 3)
    x[1, 0] = 1e5  # one wild support point on task 1
    method, unadapted = AdaptedLearner(learner), AdaptedLearner(learner)
    method.adapt((x, y), steps=10)
    unadapted.adapt((x, y), steps=0)
    assert method.fallbacks == 1 and unadapted.fallbacks == 0
    forecasts, start = method.predict(x), unadapted.predict(x)
    assert torch.isfinite(forecasts).all()
    torch.testing.assert_close(forecasts[1], start[1])
    assert not torch.allclose(forecasts[0], start[0])

    protonet = AdaptedLearner(make_learner("protonet", MLP(6, [8], 4)))
    labels = torch.arange(2).repeat(5).view(1, 10).expand(2, 10)
    protonet.adapt((x, labels))
    assert protonet.fallbacks == 0 and protonet.predict(x).shape[:2] == (2, 10)
