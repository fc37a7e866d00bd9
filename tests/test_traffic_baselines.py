"""Seasonal naive, profile and time-of-week baselines on series with a known weekly pattern."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metamap.traffic.baselines import historical_average, historical_average_week
from metamap.traffic.data import TrafficData
from metamap.traffic.experiment import (
    BASELINES,
    CANDIDATES,
    SIMPLE_BASELINES,
    ExperimentConfig,
    Target,
    make_method,
    score,
)
from metamap.traffic.features import PROFILES, WEEK_PRIOR_WEEKS, SeriesFeatures, Windows, fit_scaler

HOURS_PER_WEEK = 7 * 24
MONDAY = "2024-01-01"  # a Monday


def _hourly(values: np.ndarray, step_minutes: int = 60, windows: Windows | None = None) -> SeriesFeatures:
    """Features of ``values [T, N]`` read every ``step_minutes`` from Monday 00:00 (0 = missing)."""
    values = values.astype(np.float32)
    times = np.datetime64(MONDAY) + np.arange(len(values)) * np.timedelta64(step_minutes, "m")
    data = TrafficData(
        values,
        values != 0,
        times.astype("datetime64[ns]"),
        tuple(str(i) for i in range(values.shape[1])),
        step_minutes=step_minutes,
    )
    return SeriesFeatures(data, fit_scaler(data.values, data.mask), windows=windows)


def _weekly(n_weeks: int = 3, n_sensors: int = 2) -> np.ndarray:
    """Sensor i reads ``10 + i + 5 * weekday + hour / 10``: each hour of the week has its own reading."""
    step = np.arange(n_weeks * HOURS_PER_WEEK)
    weekday, hour = step // 24 % 7, step % 24
    return (10 + 5 * weekday + hour / 10)[:, None] + np.arange(n_sensors)[None, :]


def _targets(origins: torch.Tensor) -> torch.Tensor:
    """Target steps ``[W, 12]`` of the windows at ``origins [W]``."""
    return origins[:, None] + torch.arange(1, 13)


def test_seasonal_naive_week_repeats_a_weekly_pattern_exactly():
    features = _hourly(_weekly())
    nodes = torch.arange(2)
    origins = features.origins(HOURS_PER_WEEK, 3 * HOURS_PER_WEEK, inputs_inside=False)
    prediction = features.seasonal_naive(nodes, origins, lag_days=7)
    assert torch.equal(prediction, features.truth(nodes, origins))


def test_seasonal_naive_day_is_off_by_the_known_day_to_day_change():
    features = _hourly(_weekly())
    nodes = torch.arange(2)
    origins = features.origins(HOURS_PER_WEEK, 3 * HOURS_PER_WEEK, inputs_inside=False)
    error = features.seasonal_naive(nodes, origins, lag_days=1) - features.truth(nodes, origins)
    monday = (_targets(origins) // 24 % 7 == 0).expand(2, -1, -1)
    torch.testing.assert_close(error[monday], torch.full_like(error[monday], 30.0))  # Sunday's reading: 6 * 5 higher
    torch.testing.assert_close(error[~monday], torch.full_like(error[~monday], -5.0))


def test_seasonal_naive_falls_back_to_persistence_before_the_first_week():
    features = _hourly(_weekly(n_weeks=2))
    nodes = torch.arange(2)
    origins = features.origins(0, 2 * HOURS_PER_WEEK, inputs_inside=False)
    prediction = features.seasonal_naive(nodes, origins, lag_days=7)
    no_history = (_targets(origins) < HOURS_PER_WEEK).expand(2, -1, -1)
    assert no_history.any() and (~no_history).any()
    assert torch.equal(prediction[no_history], features.persistence(nodes, origins)[no_history])
    assert torch.equal(prediction[~no_history], features.truth(nodes, origins)[~no_history])


def test_seasonal_naive_falls_back_to_persistence_at_a_missing_lagged_reading():
    values = _weekly()
    target_step, sensor = 2 * HOURS_PER_WEEK + 30, 1
    values[target_step - HOURS_PER_WEEK, sensor] = 0  # missing
    features = _hourly(values)
    origin = target_step - 4
    prediction = features.seasonal_naive(torch.tensor([sensor]), torch.tensor([origin]), lag_days=7)[0, 0]
    assert prediction[3] == pytest.approx(values[origin, sensor])  # horizon 4 lands on the missing lag
    torch.testing.assert_close(
        prediction[[0, 1, 2, 4]],
        torch.tensor(values[[origin + 1, origin + 2, origin + 3, origin + 5], sensor], dtype=torch.float32),
    )


def test_seasonal_naive_never_reads_past_the_origin():
    """At 3-hour steps a day is 8 steps, shorter than the 12-step horizon: horizons 9..12 fall back."""
    values = 20 + np.arange(40, dtype=float)[:, None]
    features = _hourly(values, step_minutes=180)
    origin = 20
    prediction = features.seasonal_naive(torch.tensor([0]), torch.tensor([origin]), lag_days=1)[0, 0]
    expected = [values[origin + h - 8, 0] for h in range(1, 9)] + [values[origin, 0]] * 4
    torch.testing.assert_close(prediction, torch.tensor(expected, dtype=torch.float32))


def test_historical_average_week_repeats_a_weekly_pattern_exactly():
    features = _hourly(_weekly())
    nodes = torch.arange(2)
    origins = features.origins(2 * HOURS_PER_WEEK, 3 * HOURS_PER_WEEK, inputs_inside=False)
    prediction = historical_average_week(features, nodes, (0, 2 * HOURS_PER_WEEK), origins)
    torch.testing.assert_close(prediction, features.truth(nodes, origins), atol=1e-5, rtol=0)
    by_day = historical_average(features, nodes, (0, 2 * HOURS_PER_WEEK), origins)
    assert (by_day - features.truth(nodes, origins)).abs().max() > 1  # time of day alone cannot tell the weekday


def test_historical_average_week_falls_back_to_time_of_day_on_unseen_weekdays():
    features = _hourly(_weekly())
    nodes = torch.arange(2)
    support = (0, 3 * 24)  # Monday to Wednesday
    origins = features.origins(HOURS_PER_WEEK, 2 * HOURS_PER_WEEK, inputs_inside=False)
    prediction = historical_average_week(features, nodes, support, origins)
    seen = (_targets(origins) // 24 % 7 < 3).expand(2, -1, -1)
    torch.testing.assert_close(prediction[seen], features.truth(nodes, origins)[seen], atol=1e-5, rtol=0)
    by_day = historical_average(features, nodes, support, origins)
    assert torch.equal(prediction[~seen], by_day[~seen])


def test_simple_baselines_are_in_every_table_with_nothing_to_choose():
    assert set(SIMPLE_BASELINES) <= set(BASELINES) and set(SIMPLE_BASELINES) <= set(ExperimentConfig().methods)
    features = _hourly(_weekly())
    target = Target(features, torch.arange(2), (0, 2 * HOURS_PER_WEEK), (2 * HOURS_PER_WEEK, 3 * HOURS_PER_WEEK))
    config = ExperimentConfig(model="node")
    for name in SIMPLE_BASELINES:
        assert CANDIDATES[name] == [{}]
        result = score(make_method(name, None, config, features.n_features), target, {})
        assert result.prediction.shape == target.truth.shape and torch.isfinite(result.prediction).all()
    week = score(make_method("seasonal_naive_week", None, config, features.n_features), target, {})
    assert week.errors["12h"]["mae"] == 0.0


@pytest.mark.parametrize("step_minutes", [5, 15, 60])
def test_profiles_of_a_daily_cycle_are_exact_once_a_day_is_seen(step_minutes):
    per_day = 24 * 60 // step_minutes
    step = np.arange(3 * per_day)
    values = (20 + 5 * np.sin(2 * np.pi * step / per_day))[:, None] + np.array([0.0, 3.0])
    features = _hourly(values, step_minutes)
    nodes = torch.arange(2)
    origins = features.origins(per_day, 3 * per_day, inputs_inside=False)
    for name in PROFILES:
        torch.testing.assert_close(features.profile(nodes, origins, name), features.truth(nodes, origins))


def test_profile_week_is_shrunk_toward_the_day_profile_by_the_known_weight():
    features = _hourly(_weekly(n_weeks=6))
    nodes = torch.arange(2)
    origins = features.origins(HOURS_PER_WEEK, 6 * HOURS_PER_WEEK, inputs_inside=False)
    targets = _targets(origins)
    truth = features.truth(nodes, origins)
    # The last 7 days at the same hour hold each weekday once: their mean is off by 15 - 5 * weekday.
    day_error = (15.0 - 5 * (targets // 24 % 7)).expand(2, -1, -1).double()
    seen = targets[..., :1] - 1 >= HOURS_PER_WEEK  # windows whose first day profile holds 7 earlier days
    day = features.profile(nodes, origins, "profile_day") - truth
    torch.testing.assert_close(
        day[seen.expand(2, -1, 12)], day_error[seen.expand(2, -1, 12)].float(), atol=1e-4, rtol=0
    )
    weeks = (targets // HOURS_PER_WEEK).clamp(max=4).expand(2, -1, -1).double()  # earlier weeks seen, at most 4
    expected = WEEK_PRIOR_WEEKS * (truth.double() + day.double()) + weeks * truth.double()
    expected = expected / (weeks + WEEK_PRIOR_WEEKS)
    torch.testing.assert_close(features.profile(nodes, origins, "profile_week").double(), expected, atol=1e-4, rtol=0)
    coverage = features.profile_coverage(nodes, origins, "profile_week")
    torch.testing.assert_close(coverage, weeks[..., 0].float() / 4)


def test_profiles_of_daily_data_never_read_past_the_origin():
    """Daily readings, 3 days ahead: the third target step's profile starts 3 days back."""
    rng = np.random.default_rng(0)
    values = rng.uniform(1, 9, (60, 2))
    windows = Windows(history=2, horizons=(1, 3), seasonal=False)
    features = _hourly(values, 24 * 60, windows)
    later = values.copy()
    later[31:] = rng.uniform(1, 9, later[31:].shape)  # everything after the origin, changed
    changed = _hourly(later, 24 * 60, windows)
    nodes, origins = torch.arange(2), torch.tensor([30])
    for name in PROFILES:
        assert torch.equal(features.profile(nodes, origins, name), changed.profile(nodes, origins, name))
    expected = values[[33 - k for k in range(3, 10)]].mean(0)  # the target is day 33: days 30 (the origin) .. 24
    np.testing.assert_allclose(features.profile(nodes, origins, "profile_day")[:, 0, 2], expected, rtol=1e-5)


def test_profile_day_skips_missing_readings_and_falls_back_to_persistence():
    values = np.tile(np.arange(1.0, 25.0), 3)[:, None] * np.ones((1, 2))
    values[24 + 13, 0] = 0  # sensor 0 misses 13:00 on the second day
    values[:24, 1] = 0  # sensor 1 has no first day
    features = _hourly(values)
    nodes, origins = torch.arange(2), torch.tensor([24 + 11, 48 + 11])  # 11:00 on the second and third days
    profile = features.profile(nodes, origins, "profile_day")
    assert profile[0, 0, 1] == 14.0 and profile[0, 1, 1] == 14.0  # 13:00 seen on one earlier day: still exact
    assert torch.equal(profile[1, 0], features.persistence(nodes, origins)[1, 0])  # no earlier day: persistence
    coverage = features.profile_coverage(nodes, origins, "profile_day")
    torch.testing.assert_close(coverage, torch.tensor([[1 / 7, 2 / 7], [0.0, 1 / 7]]))
