"""Forecast windows, normalization, the sensor-task family, baselines and metrics."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from metamap.errors import DataError
from metamap.learners import make_learner
from metamap.learners.finetune import fit_per_task
from metamap.nn import MLP
from metamap.nn.graph import diffuse, random_walk_matrices
from metamap.preprocessing import Standardizer
from metamap.traffic.baselines import historical_average
from metamap.traffic.bundled import load_bundled_la
from metamap.traffic.data import TrafficData
from metamap.traffic.experiment import ExperimentConfig
from metamap.traffic.features import SeriesFeatures, fill_forward, fit_scaler
from metamap.traffic.linear import fit_ridge, predict_ridge
from metamap.traffic.metrics import horizon_errors, masked_errors
from metamap.traffic.protocols import new_city, new_sensors


def _data(values: np.ndarray, adjacency: np.ndarray | None = None, start: str = "2024-01-01") -> TrafficData:
    values = values.astype(np.float32)
    times = np.datetime64(start) + np.arange(len(values)) * np.timedelta64(5, "m")
    ids = tuple(str(i) for i in range(values.shape[1]))
    return TrafficData(values, values != 0, times.astype("datetime64[ns]"), ids, step_minutes=5, adjacency=adjacency)


def _scaler(mean: float, std: float) -> Standardizer:
    """The normalization fitted on the two readings ``mean -+ std`` (so its mean and spread are exact)."""
    readings = np.array([[mean - std], [mean + std]], dtype=np.float32)
    scaler = fit_scaler(readings, np.ones_like(readings, bool))
    assert (float(scaler.mean_), float(scaler.scale_)) == (mean, std)
    return scaler


def _ramp(n_steps: int = 400, n_sensors: int = 3) -> TrafficData:
    """Sensor i reads 10 + i + 0.1 * step: the value tells the step."""
    steps = np.arange(n_steps)[:, None]
    return _data(10 + np.arange(n_sensors)[None, :] + 0.1 * steps)


def test_fill_forward_carries_last_observation_and_fills_the_start():
    values = np.array([[0, 1], [2, 0], [0, 0], [5, 3]], dtype=np.float32)
    filled = fill_forward(values, values != 0, fill=-1.0)
    np.testing.assert_array_equal(filled, [[-1, 1], [2, 1], [2, 1], [5, 3]])


def test_windows_align_inputs_and_targets_with_the_origin():
    data = _ramp()
    scaler = _scaler(10.0, 2.0)
    features = SeriesFeatures(data, scaler)
    nodes = torch.tensor([2, 0])
    origins = torch.tensor([[20, 50], [11, 300]])
    x, y, mask = features.windows(nodes, origins)
    assert x.shape == (2, 2, features.n_features) and features.n_features == 2 * 12 + 3 + 3 * 12
    assert y.shape == mask.shape == (2, 2, 12) and mask.all()
    raw_inputs = scaler.inverse_transform(x[..., :12])  # channel 0: the hour up to and including the origin
    expected_last = torch.tensor([[12 + 2.0, 12 + 5.0], [10 + 1.1, 10 + 30.0]])
    torch.testing.assert_close(raw_inputs[..., -1], expected_last)
    torch.testing.assert_close(raw_inputs[..., 0], expected_last - 1.1)
    torch.testing.assert_close(scaler.inverse_transform(y), raw_inputs[..., -1:] + 0.1 * torch.arange(1, 13))
    torch.testing.assert_close(features.truth(nodes, origins), scaler.inverse_transform(y))


def test_persistence_of_a_known_ramp_has_the_known_error():
    features = SeriesFeatures(_ramp(), _scaler(0.0, 1.0))
    nodes = torch.arange(3)
    origins = features.origins(100, 300)
    truth = features.truth(nodes, origins)
    errors = horizon_errors(
        features.persistence(nodes, origins), truth, features.observed(nodes, origins), features.spec, 5
    )
    for minutes, steps in (("15min", 3), ("30min", 6), ("1h", 12)):
        assert errors[minutes]["mae"] == pytest.approx(0.1 * steps, rel=1e-4)
        assert errors[minutes]["rmse"] == pytest.approx(0.1 * steps, rel=1e-4)


def test_origins_keep_windows_inside_the_period():
    features = SeriesFeatures(_ramp(), _scaler(0.0, 1.0))
    inside = features.origins(100, 200)
    assert int(inside[0]) - 11 == 100 and int(inside[-1]) + 12 == 199
    reaching_back = features.origins(100, 200, inputs_inside=False)
    assert int(reaching_back[0]) + 1 == 100


def test_zeros_are_missing_in_targets_and_metrics():
    values = 50 + np.zeros((200, 2))
    values[60:70, 1] = 0
    features = SeriesFeatures(_data(values), _scaler(50.0, 5.0))
    _, y, mask = features.windows(torch.tensor([1]), torch.tensor([55]))
    assert not mask[0, 0, 4:12].any() and mask[0, 0, :4].all()
    assert (y[~mask] == 0).all()
    np.testing.assert_array_equal(features.observed(torch.tensor([1]), torch.tensor([55])), mask)
    truth = torch.tensor([[50.0, 0.0, 40.0]])
    errors = masked_errors(torch.tensor([[45.0, 999.0, 44.0]]), truth, torch.tensor([[True, False, True]]))
    assert errors["mae"] == pytest.approx(4.5) and errors["mape"] == pytest.approx((10 + 10) / 2)


def test_missing_input_readings_carry_forward_and_are_flagged():
    values = 50 + np.arange(100, dtype=float)[:, None].repeat(2, 1)
    values[40:45, 0] = 0
    features = SeriesFeatures(_data(values), _scaler(0.0, 1.0))
    x, _, _ = features.windows(torch.tensor([0]), torch.tensor([44]))
    assert torch.all(x[0, 0, 7:12] == 50 + 39)  # the last observed reading
    assert torch.equal(x[0, 0, 12:24], torch.tensor([1.0] * 7 + [0.0] * 5))


def test_historical_average_repeats_a_periodic_day_exactly():
    day = 288
    profile = 40 + 20 * np.sin(np.arange(day) * 2 * np.pi / day)
    data = _data(np.tile(profile, 4)[:, None].repeat(2, 1))
    features = SeriesFeatures(data, _scaler(0.0, 1.0))
    nodes = torch.arange(2)
    origins = features.origins(3 * day, 4 * day, inputs_inside=False)
    prediction = historical_average(features, nodes, (day, 3 * day), origins)
    torch.testing.assert_close(prediction, features.truth(nodes, origins), atol=1e-4, rtol=0)


def test_scaler_sees_only_training_readings_of_training_sensors():
    rng = np.random.default_rng(0)
    data = _data(rng.uniform(20, 70, size=(7 * 288, 20)), adjacency=np.eye(20, dtype=np.float32))
    config = ExperimentConfig(model="node", seed=3)
    setup = new_sensors(data, config)
    targets = setup.targets["day"].nodes.numpy()
    source = np.setdiff1d(np.arange(20), targets)
    assert (
        setup.scaler.state_dict()
        == fit_scaler(data.values[: 5 * 288, source], data.mask[: 5 * 288, source]).state_dict()
    )
    changed = data.values.copy()
    changed[5 * 288 :] *= 3  # the test days
    changed[:, targets] += 100  # every reading of the target sensors
    assert new_sensors(replace(data, values=changed), config).scaler.state_dict() == setup.scaler.state_dict()
    other = _data(rng.uniform(20, 70, size=(2 * 288, 5)), adjacency=np.eye(5, dtype=np.float32))
    city = new_city(data, other, config)
    assert city.scaler.state_dict() == fit_scaler(data.values, data.mask).state_dict()
    assert (
        new_city(data, replace(other, values=other.values * 5), config).scaler.state_dict() == city.scaler.state_dict()
    )


def test_support_shorter_than_a_day_sets_every_protocols_blocks():
    rng = np.random.default_rng(1)
    data = _data(rng.uniform(20, 70, size=(7 * 288, 20)), adjacency=np.eye(20, dtype=np.float32))
    half = 144  # 12 hours of 5-minute steps
    config = ExperimentConfig(model="node", support_steps=half)
    setup = new_sensors(data, config)
    assert set(setup.targets) == {"12h"}  # named by its support; the 6 h one comes with a support day only
    assert setup.targets["12h"].support == (5 * 288 - half, 5 * 288)
    assert setup.validations["12h"].support == (5 * 288 - 2 * half, 5 * 288 - half)
    assert setup.validations["12h"].test == (0, 5 * 288 - 2 * half)
    city = new_city(data, _data(rng.uniform(20, 70, size=(288, 5)), adjacency=np.eye(5, dtype=np.float32)), config)
    assert city.targets["city"].support == (0, half) and city.targets["city"].test == (half, 288)
    with pytest.raises(DataError, match="needs 1800 training steps"):
        new_sensors(data, replace(config, support_steps=3 * 288))


def test_p1_on_a_short_file_trains_on_one_day_with_a_six_hour_support():
    """2.4 days (PEMS04's length): one training day holds the targets' 6 h, the validation sensors' 6 h
    before it and 12 h to score them; the test is every step after day 1."""
    rng = np.random.default_rng(2)
    data = _data(rng.uniform(20, 70, size=(694, 20)), adjacency=np.eye(20, dtype=np.float32))
    config = ExperimentConfig(model="node", support_steps=72)
    with pytest.raises(DataError, match="no training window holds a reading a day earlier"):
        new_sensors(data, config, train_days=1)
    config = replace(config, seasonal=False)
    setup = new_sensors(data, config, train_days=1)
    assert set(setup.targets) == {"6h"}
    assert setup.targets["6h"].support == (216, 288) and setup.targets["6h"].test == (288, 694)
    assert setup.validations["6h"].support == (144, 216) and setup.validations["6h"].test == (0, 144)
    with pytest.raises(DataError, match="needs 360 training steps"):
        new_sensors(data, replace(config, support_steps=144), train_days=1)
    with pytest.raises(DataError, match="a quarter day of test steps after them"):
        new_sensors(data, config, train_days=3)


def test_sensor_tasks_support_is_one_block_and_query_lies_outside_it():
    n_steps, n_sensors = 5 * 288, 30
    codes = 10_000 * (np.arange(n_sensors)[None, :] + 1) + np.arange(n_steps)[:, None]  # sensor and step
    data = _data(codes, adjacency=np.eye(n_sensors, dtype=np.float32))
    setup = new_sensors(data, ExperimentConfig(model="node"), train_days=4)
    episode = setup.family.sample(8, torch.Generator().manual_seed(0))
    assert episode.x_support.shape == (8, 48, setup.family.n_features) and episode.y_query.shape == (8, 48, 12)
    targets = set(setup.targets["day"].nodes.tolist())
    for t in range(8):
        support = torch.round(setup.scaler.inverse_transform(episode.x_support[t, :, 11]).double()).long()
        query = torch.round(setup.scaler.inverse_transform(episode.x_query[t, :, 11]).double()).long()
        sensors = torch.cat([support, query]) // 10_000 - 1
        assert len(sensors.unique()) == 1 and int(sensors[0]) not in targets  # one source sensor per task
        s_origin, q_origin = support % 10_000, query % 10_000
        first, last = int(s_origin.min()) - 11, int(s_origin.max()) + 12  # steps the support windows span
        assert last - first < 288  # one support block of a day
        assert bool(((q_origin + 12 < first) | (q_origin - 11 > last)).all())  # no query window overlaps it
        assert int(q_origin.min()) >= 11 and int(torch.cat([s_origin, q_origin]).max()) + 12 < 4 * 288


def test_random_walk_matrices_and_diffusion_on_a_chain():
    adjacency = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0], [0.0, 0.0, 0.0]])  # 0 -> 1 -> 2
    forward, backward = random_walk_matrices(adjacency)
    torch.testing.assert_close(forward.sum(1), torch.ones(3))
    torch.testing.assert_close(forward[1], torch.tensor([0.0, 1 / 3, 2 / 3]))  # self-loop weight 1 added
    torch.testing.assert_close(backward[1], torch.tensor([0.5, 0.5, 0.0]))
    signal = torch.tensor([[1.0], [2.0], [4.0]])
    diffused = diffuse(signal, adjacency, hops=2)
    assert diffused.shape == (4, 3, 1)
    torch.testing.assert_close(diffused[0], forward @ signal)
    torch.testing.assert_close(diffused[1], forward @ forward @ signal)
    torch.testing.assert_close(diffused[3], backward @ backward @ signal)


def test_fit_per_task_equals_fitting_each_task_alone():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(3, 10, 4, generator=gen), torch.randn(3, 10, 2, generator=gen)
    learner = make_learner("pretrain", MLP(4, [8], 2), inner_steps=0)
    params = learner.meta_params()
    together = fit_per_task(learner, params, x, y, None, steps=15, lr=1e-2)
    for t in range(3):
        alone = fit_per_task(learner, params, x[t : t + 1], y[t : t + 1], None, steps=15, lr=1e-2)
        for name in together.params:
            torch.testing.assert_close(together.params[name][t], alone.params[name][0], rtol=1e-5, atol=1e-6)


def test_ridge_recovers_a_linear_map_and_skips_windows_with_missing_targets():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 50, 3, generator=gen)
    weights = torch.randn(2, 3, 4, generator=gen)
    y = x @ weights + 0.5
    mask = torch.ones(2, 50, 4, dtype=torch.bool)
    y[0, 7] = 1e6
    mask[0, 7, 1] = False
    fitted = fit_ridge(x, y, mask, penalty=1e-9)
    torch.testing.assert_close(predict_ridge(fitted, x[:, :5]), (x @ weights + 0.5)[:, :5], rtol=1e-4, atol=1e-4)


def test_ridge_of_a_sensor_without_a_complete_window_is_no_correction():
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(2, 20, 3, generator=gen), torch.randn(2, 20, 4, generator=gen)
    mask = torch.ones(2, 20, 4, dtype=torch.bool)
    mask[1, :, 0] = False  # sensor 1: every window misses a target reading
    fitted = fit_ridge(x, y, mask, penalty=10.0)
    assert torch.equal(fitted[1], torch.zeros(4, 4, dtype=torch.float64)) and fitted[0].abs().sum() > 0


def test_bundled_week_equals_the_shared_files(shared_data):
    from metamap.traffic.io import load_traffic

    folder = shared_data / "traffic"
    shared = load_traffic(
        folder / "metr-la-week.h5", folder / "adj_mx_la.pkl", folder / "graph_sensor_locations_la.csv"
    )
    bundled = load_bundled_la()
    np.testing.assert_array_equal(bundled.values, shared.values)
    np.testing.assert_array_equal(bundled.times, shared.times)
    np.testing.assert_array_equal(bundled.adjacency, shared.adjacency)
    np.testing.assert_array_equal(bundled.coords, shared.coords)
    assert bundled.sensor_ids == shared.sensor_ids


def test_forecasts_that_went_non_finite_are_refused_with_the_method_and_its_settings():
    from metamap.errors import ConfigError
    from metamap.traffic.experiment import require_finite

    forecasts = torch.zeros(5, 3, 4)
    require_finite("reptile", forecasts, {"steps": 20})  # finite: nothing to say
    forecasts[1, 2, 0], forecasts[3, 0, 1] = float("nan"), float("inf")
    with pytest.raises(ConfigError, match=r"reptile \(steps=20\) diverged adapting to 2 of 5 sensors"):
        require_finite("reptile", forecasts, {"steps": 20})
