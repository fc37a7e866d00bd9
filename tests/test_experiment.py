"""The experiment layer: choosing settings on validation tasks, and the result table."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch

from metamap.errors import ConfigError
from metamap.experiment import Choice, Diverged, ResultTable, ValidationTask, choose_on_validation


def mse(predictions: list[torch.Tensor], truths: list[torch.Tensor]) -> float:
    return float(torch.cat([(p - t).flatten() ** 2 for p, t in zip(predictions, truths)]).mean())


class GradientMean:
    """Fits one number to the support by ``steps`` gradient steps at ``lr`` on the squared error; predicts it."""

    def fit(self, source: Any) -> None:
        pass

    def adapt(self, support: torch.Tensor, *, lr: float, steps: int = 100) -> None:
        w = torch.zeros(())
        for _ in range(steps):
            w = w - lr * 2 * (w - support.mean())  # diverges for lr > 1
        self.w = w

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.w.expand_as(x)


class Shrunk:
    """Predicts ``scale`` times the support mean; raises, or diverges, for chosen scales."""

    def fit(self, source: Any) -> None:
        pass

    def adapt(self, support: torch.Tensor, *, scale: float) -> None:
        if scale == 0:
            raise ZeroDivisionError("scale 0")
        if scale < 0:
            raise Diverged("the fit's loss went NaN")
        self.value = scale * support.mean()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.value.expand_as(x)


def tasks(n: int = 4, factor: float = 1.0, seed: int = 0) -> list[ValidationTask]:
    """Tasks with support values around a task mean m; query truth ``factor * m``."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        mean = torch.randn((), generator=generator) * 3
        support = mean + 0.1 * torch.randn(10, generator=generator)
        support = support - support.mean() + mean  # exact task mean
        out.append(ValidationTask(support, torch.zeros(5), torch.full((5,), float(factor * mean))))
    return out


def test_the_known_right_setting_is_chosen():
    choice = choose_on_validation(
        Shrunk(), [{"scale": s} for s in (0.5, 1.0, 2.0, 4.0)], tasks(factor=2.0), mse, name="shrunk"
    )
    assert choice.settings == {"scale": 2.0}
    assert choice.score == pytest.approx(0.0, abs=1e-10)
    assert [s for s, _ in choice.tried] == [{"scale": s} for s in (0.5, 1.0, 2.0, 4.0)]
    assert all(score > 0.1 for s, score in choice.tried if s["scale"] != 2.0)


def test_a_diverging_candidate_is_never_chosen():
    # lr 3 overflows to inf then NaN; lr 0.5 reaches the mean in one step; lr 0.05 is still off after 100 steps.
    validation = tasks()
    choice = choose_on_validation(GradientMean(), [{"lr": 3.0}, {"lr": 0.05}, {"lr": 0.5}], validation, mse)
    scores = dict((s["lr"], v) for s, v in choice.tried)
    assert scores[3.0] == math.inf
    assert choice.settings == {"lr": 0.5}
    assert choice.score == pytest.approx(0.0, abs=1e-8)
    assert 0 < scores[0.05] < math.inf


def test_raised_numerical_errors_score_inf_and_other_errors_propagate():
    choice = choose_on_validation(Shrunk(), [{"scale": 0}, {"scale": -1.0}, {"scale": 1.0}], tasks(), mse)
    assert [v for _, v in choice.tried][:2] == [math.inf, math.inf]
    assert choice.settings == {"scale": 1.0}
    with pytest.raises(TypeError):  # a bug (an unknown setting) is not a divergence
        choose_on_validation(Shrunk(), [{"shape": 1.0}], tasks(), mse)


def test_a_non_finite_score_counts_as_diverged():
    choice = choose_on_validation(
        Shrunk(),
        [{"scale": 1.0}, {"scale": 2.0}],
        tasks(),
        lambda p, t: math.nan if float(p[0][0]) == float(t[0][0]) else 1.0,
    )
    assert choice.settings == {"scale": 2.0}
    assert choice.tried[0][1] == math.inf


def test_every_candidate_diverged_refuses_in_one_line():
    with pytest.raises(ConfigError, match="finetune: every candidate setting diverged") as raised:
        choose_on_validation(GradientMean(), [{"lr": 3.0}, {"lr": 5.0}], tasks(), mse, name="finetune")
    assert "\n" not in str(raised.value)
    with pytest.raises(ConfigError, match="no candidate"):
        choose_on_validation(GradientMean(), [], tasks(), mse)
    with pytest.raises(ConfigError, match="no validation tasks"):
        choose_on_validation(GradientMean(), [{"lr": 0.5}], [], mse)


def test_ties_go_to_the_first_candidate():
    constant = lambda p, t: 1.0  # noqa: E731 - every candidate scores the same
    for order in ([{"scale": 1.0}, {"scale": 2.0}, {"scale": 3.0}], [{"scale": 3.0}, {"scale": 1.0}]):
        assert choose_on_validation(Shrunk(), order, tasks(), constant).settings == order[0]
    # lr 0.5 lands exactly on the support mean in one step and stays there
    support = torch.tensor([2.0, 4.0])
    validation = [ValidationTask(support, torch.zeros(3), torch.full((3,), 3.0))]
    choice = choose_on_validation(GradientMean(), [{"lr": 0.5, "steps": 1}, {"lr": 0.5, "steps": 2}], validation, mse)
    assert [v for _, v in choice.tried] == [0.0, 0.0]
    assert choice.settings == {"lr": 0.5, "steps": 1}


def test_the_record_says_what_was_tried():
    choice = choose_on_validation(GradientMean(), [{"lr": 3.0}, {"lr": 0.5}], tasks(), mse)
    record = json.loads(json.dumps(choice.to_json(), allow_nan=False))
    assert record["chosen"] == {"lr": 0.5}
    assert record["tried"][0] == {"settings": {"lr": 3.0}, "score": None}
    assert record["tried"][1]["settings"] == {"lr": 0.5}
    assert record["score"] == record["tried"][1]["score"]
    assert isinstance(choice, Choice) and choice.tried[1] == ({"lr": 0.5}, choice.score)


def test_table_json_round_trip_and_layouts():
    table = ResultTable(("mae", "rmse"), setting_name="K")
    table.add("maml", {"mae": 1.25, "rmse": 2.5}, setting="5", ci95={"mae": 0.1})
    table.add("persistence", {"mae": 0.75, "rmse": 1.5}, setting="5")
    table.add("scratch", {"mae": math.inf}, setting="10")
    again = ResultTable.from_json(json.loads(json.dumps(table.to_json(), allow_nan=False)))
    assert again.rows[:2] == table.rows[:2]
    assert math.isnan(again.rows[2].values["mae"])
    assert again.metrics == table.metrics and again.setting_name == "K"
    assert [r.method for r in table.sorted_by("mae").rows] == ["persistence", "maml", "scratch"]
    markdown = table.to_markdown().splitlines()
    assert markdown[0] == "| method | K | mae | rmse |"
    assert markdown[2] == "| maml | 5 | 1.25 ± 0.1 | 2.5 |"
    assert table.to_text().splitlines()[0].split() == ["method", "K", "mae", "rmse"]


def test_table_without_settings_and_bad_rows():
    table = ResultTable(("mae",))
    table.add("historical_average", {"mae": 3.0})
    assert table.to_text().splitlines() == [
        "method              mae",
        "------------------  ---",
        "historical_average  3",
    ]
    with pytest.raises(ConfigError, match="unknown metric"):
        table.add("maml", {"mape": 1.0})
    with pytest.raises(ConfigError, match="sort by"):
        table.sorted_by("mape")
    with pytest.raises(ConfigError, match="not a result table"):
        ResultTable.from_json({"rows": []})


def test_a_learner_adapted_by_its_inner_loop_picks_the_steps_that_fit():
    from metamap.experiment import AdaptedLearner
    from metamap.learners import make_learner
    from metamap.nn import MLP

    torch.manual_seed(0)
    learner = make_learner("maml", MLP(1, [], 1), inner_steps=1, inner_lr=0.1)
    generator = torch.Generator().manual_seed(1)
    slope = 2.0 + torch.rand(4, 1, 1, generator=generator)  # lines y = slope * x: more SGD steps fit them better
    x_support, x_query = torch.randn(4, 10, 1, generator=generator), torch.randn(4, 20, 1, generator=generator)
    validation = [ValidationTask((x_support, slope * x_support), x_query, slope * x_query)]
    choice = choose_on_validation(AdaptedLearner(learner), [{"steps": s} for s in (0, 1, 5, 50)], validation, mse)
    scores = [score for _, score in choice.tried]
    assert scores == sorted(scores, reverse=True)
    assert choice.settings == {"steps": 50}


def test_the_choice_says_which_tuned_keys_sit_at_the_edge_of_their_grid():
    # GradientMean with steps 1: lr 0.5 lands on the support mean exactly; lr 0.1 and 0.9 (its mirror) do not
    interior = choose_on_validation(GradientMean(), [{"lr": lr, "steps": 1} for lr in (0.9, 0.1, 0.5)], tasks(), mse)
    assert interior.settings["lr"] == 0.5
    assert interior.grid == {"lr": [0.1, 0.5, 0.9], "steps": [1]}
    assert interior.at_edge == ()  # steps was fixed, not tuned
    candidates = [{"lr": lr, "steps": s} for lr in (0.1, 0.5) for s in (1, 2)]
    edge = choose_on_validation(GradientMean(), candidates, tasks(), mse)
    assert edge.settings == {"lr": 0.5, "steps": 1}  # the best rate is the largest tried; ties go to 1 step
    assert edge.at_edge == ("lr", "steps")
    low = choose_on_validation(GradientMean(), [{"lr": 0.5, "steps": s} for s in (1, 0, 5)], tasks(), mse)
    assert low.grid["steps"] == [0, 1, 5] and low.settings["steps"] == 1 and low.at_edge == ()


def test_a_non_numeric_key_is_listed_in_the_grid_but_never_at_an_edge():
    tried = (({"optimizer": "adam", "lr": 0.1}, 2.0), ({"optimizer": "sgd", "lr": 0.1}, 1.0))
    choice = Choice({"optimizer": "sgd", "lr": 0.1}, 1.0, tried)
    assert choice.grid == {"optimizer": ["adam", "sgd"], "lr": [0.1]}
    assert choice.at_edge == ()
