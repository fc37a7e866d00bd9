"""Windows given in time, seasonal inputs, residual targets on a base forecast, the strict new-sensor protocol."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from metamap.arguments import duration_label
from metamap.errors import ConfigError
from metamap.traffic.data import TrafficData
from metamap.traffic.experiment import ExperimentConfig, Target, choose_base, make_method, score
from metamap.traffic.features import BASES, PROFILES, SEASONAL, SeriesFeatures, Windows, fit_scaler
from metamap.traffic.metrics import masked_errors
from metamap.traffic.protocols import new_sensors

HOURS_PER_WEEK = 7 * 24


def _weekly_data(n_weeks: int = 3, n_sensors: int = 3, noise: float = 0.0) -> TrafficData:
    """Hourly readings from Monday 00:00: sensor i reads ``10 + i + 5 * weekday + hour / 10`` (+ noise)."""
    step = np.arange(n_weeks * HOURS_PER_WEEK)
    weekday, hour = step // 24 % 7, step % 24
    values = (10 + 5 * weekday + hour / 10)[:, None] + np.arange(n_sensors)[None, :]
    values = values + noise * np.random.default_rng(0).standard_normal(values.shape)
    times = np.datetime64("2024-01-01") + step * np.timedelta64(60, "m")
    return TrafficData(
        values.astype(np.float32),
        np.ones(values.shape, bool),
        times.astype("datetime64[ns]"),
        tuple(str(i) for i in range(n_sensors)),
        step_minutes=60,
    )


def _features(data: TrafficData, **windows) -> SeriesFeatures:
    return SeriesFeatures(data, fit_scaler(data.values, data.mask), windows=Windows(**windows))


def test_durations_become_steps_of_the_data_and_labels_say_them():
    windows = Windows.from_minutes(15, history=120, horizons=(60, 180))
    assert (windows.history, windows.horizons, windows.horizon) == (8, (4, 12), 12)
    assert windows.labels(15) == ("1h", "3h")
    assert Windows.from_minutes(5, None, None).labels(5) == ("15min", "30min", "1h")
    assert [duration_label(m) for m in (90, 60, 1440, 2880, 30)] == ["90min", "1h", "1d", "2d", "30min"]
    with pytest.raises(ConfigError, match="multiple of the data's 1h step"):
        Windows.from_minutes(60, history=90, horizons=None)
    with pytest.raises(ConfigError, match="increasing"):
        Windows(horizons=(6, 3))


def test_daytype_lag_reads_the_last_day_of_the_same_kind():
    features = _features(_weekly_data(), seasonal=False)
    nodes = torch.arange(3)
    origins = features.origins(HOURS_PER_WEEK, 3 * HOURS_PER_WEEK, inputs_inside=False)
    error = features.seasonal_naive(nodes, origins, SEASONAL["seasonal_naive_daytype"]) - features.truth(nodes, origins)
    weekday = ((origins[:, None] + torch.arange(1, 13)) // 24 % 7).expand(3, -1, -1)
    # Monday reads Friday (+20), Tuesday-Friday the day before (-5), Saturday the Sunday before (+5), Sunday Saturday.
    expected = torch.where(weekday == 0, 20.0, torch.where(weekday == 5, 5.0, -5.0))
    torch.testing.assert_close(error, expected, atol=1e-4, rtol=0)


def test_seasonal_inputs_hold_the_lagged_readings_of_every_target_step():
    data = _weekly_data()
    features = _features(data, profiles=True)
    nodes, origins = torch.tensor([1]), torch.tensor([[2 * HOURS_PER_WEEK + 5]])
    x, _, _ = features.windows(nodes, origins)
    seasonal, profiles, coverage = x[0, 0, -5 * 12 - 2 :].split([3 * 12, 2 * 12, 2])
    for row, lags in zip(seasonal.reshape(3, 12), SEASONAL.values(), strict=True):
        expected = features.scaler.transform(features.seasonal_naive(nodes, origins, lags))[0, 0]
        torch.testing.assert_close(row, expected)
    for row, name in zip(profiles.reshape(2, 12), PROFILES, strict=True):
        torch.testing.assert_close(row, features.scaler.transform(features.profile(nodes, origins, name))[0, 0])
    torch.testing.assert_close(coverage, torch.tensor([1.0, 0.5]))  # 7 of 7 days, 2 of 4 weeks
    assert features.n_features == 2 * 12 + 3 + 5 * 12 + 2
    assert _features(data).n_features == 2 * 12 + 3 + 3 * 12  # profiles are off by default


def test_residual_targets_give_the_base_back_for_a_zero_correction():
    data = _weekly_data(noise=0.3)
    plain, residual = _features(data), _features(data, base="seasonal_naive_week")
    nodes, origins = torch.arange(3), torch.arange(HOURS_PER_WEEK, HOURS_PER_WEEK + 50)
    _, y_plain, mask = plain.windows(nodes, origins)
    _, y_residual, _ = residual.windows(nodes, origins)
    week = residual.seasonal_naive(nodes, origins, 7)
    torch.testing.assert_close(y_plain - y_residual, residual.scaler.transform(week) * mask, atol=1e-5, rtol=0)
    torch.testing.assert_close(residual.readings(torch.zeros_like(y_residual), nodes, origins), week)
    torch.testing.assert_close(plain.readings(y_plain, nodes, origins), plain.truth(nodes, origins), atol=1e-4, rtol=0)


def test_nonnegative_forecasts_are_clipped_at_zero():
    features = _features(_weekly_data(), nonnegative=True)
    nodes, origins = torch.arange(3), torch.arange(20, 30)
    very_low = torch.full((3, 10, 12), -100.0)
    assert features.readings(very_low, nodes, origins).min() == 0.0
    assert _features(_weekly_data()).readings(very_low, nodes, origins).min() < 0


def test_mape_is_left_out_where_a_reading_is_zero():
    truth = torch.tensor([0.0, 2.0, 4.0])
    observed = torch.ones(3, dtype=torch.bool)
    assert masked_errors(truth + 1, truth, observed)["mape"] is None
    assert masked_errors(truth[1:] + 1, truth[1:], observed[1:])["mape"] == pytest.approx(37.5)


def test_the_base_chosen_on_validation_is_the_one_that_repeats_the_week():
    features = _features(_weekly_data(noise=0.1))
    validation = Target(features, torch.arange(3), (0, 24), (HOURS_PER_WEEK, 3 * HOURS_PER_WEEK))
    choice = choose_base(validation)
    assert choice.settings == {"base": "seasonal_naive_week"}
    assert len(choice.tried) == len(BASES) and choice.score == min(score for _, score in choice.tried)


def _la_like(n_sensors: int = 20, days: int = 7) -> TrafficData:
    """5-minute readings with a daily cycle on a ring graph."""
    steps = np.arange(days * 288)
    rng = np.random.default_rng(1)
    values = 50 + 10 * np.sin(2 * np.pi * steps / 288)[:, None] + rng.normal(0, 1, (len(steps), n_sensors))
    ring = np.roll(np.eye(n_sensors, dtype=np.float32), 1, axis=1)
    times = np.datetime64("2024-01-01") + steps * np.timedelta64(5, "m")
    ids = tuple(str(i) for i in range(n_sensors))
    return TrafficData(
        values.astype(np.float32), np.ones(values.shape, bool), times.astype("datetime64[ns]"), ids, 5, ring + ring.T
    )


def test_new_sensors_meta_training_never_sees_a_target_reading():
    data = _la_like()
    config = ExperimentConfig(model="graph", n_support=4, n_query=4, methods=("maml",))
    setup = new_sensors(data, config)
    target_nodes = setup.targets["day"].nodes.numpy()
    source = setup.family.sources[0]
    assert source.data.n_sensors == data.n_sensors - len(target_nodes)
    assert not set(source.data.sensor_ids) & {data.sensor_ids[i] for i in target_nodes}
    changed = data.values.copy()
    changed[:, target_nodes] *= 3  # the targets' readings, all of them
    other = new_sensors(replace(data, values=changed), config)
    assert other.config.base == setup.config.base
    first = setup.family.sample(4, torch.Generator().manual_seed(0))
    second = other.family.sample(4, torch.Generator().manual_seed(0))
    assert torch.equal(first.x_support, second.x_support) and torch.equal(first.x_query, second.x_query)
    assert setup.targets["day"].features.data.n_sensors == data.n_sensors  # at test time: the whole network


def test_the_week_profile_averages_out_the_noise_that_same_hour_last_week_keeps():
    """Hourly counts repeating a random weekly pattern plus noise of std 5. Same hour last week errs by the
    difference of two noises (MAE 5 sqrt(2) sqrt(2 / pi)); the mean of four weeks by the target's noise and a
    quarter of the variance (5 sqrt(1.25) sqrt(2 / pi)), and validation takes it as the base forecast."""
    rng = np.random.default_rng(0)
    n_weeks, n_sensors = 8, 3
    pattern = rng.uniform(20, 100, (HOURS_PER_WEEK, 1)) * rng.uniform(0.5, 1.5, (1, n_sensors))
    values = np.tile(pattern, (n_weeks, 1)) + rng.normal(0, 5, (n_weeks * HOURS_PER_WEEK, n_sensors))
    times = np.datetime64("2024-01-01") + np.arange(len(values)) * np.timedelta64(60, "m")
    data = TrafficData(
        values.astype(np.float32), np.ones(values.shape, bool), times.astype("datetime64[ns]"), ("a", "b", "c"), 60
    )
    target = Target(_features(data), torch.arange(3), (0, HOURS_PER_WEEK), (5 * HOURS_PER_WEEK, 8 * HOURS_PER_WEEK))
    config = ExperimentConfig(model="node")
    mae = {
        name: score(make_method(name, None, config, target.features.n_features), target, {}).errors["12h"]["mae"]
        for name in ("seasonal_naive_week", "profile_week")
    }
    half_normal = 5 * np.sqrt(2 / np.pi)
    assert mae["seasonal_naive_week"] == pytest.approx(half_normal * np.sqrt(2), rel=0.05)
    # 1.25 for four noisy weeks, plus the shrinkage toward the day profile (0.25 of 4.25 weeks) at most a few %
    assert half_normal * np.sqrt(1.25) * 0.95 < mae["profile_week"] < half_normal * np.sqrt(1.25) * 1.1
    assert choose_base(target).settings == {"base": "profile_week"}
