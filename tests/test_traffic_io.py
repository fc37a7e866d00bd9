"""Traffic loaders: the real METR-LA and PEMS04 files, generated files, and every bad-file error."""

from __future__ import annotations

import math
import os
import pickle

import numpy as np
import pandas as pd
import pytest

from metamap.errors import ConfigError, DataError, ShapeError
from metamap.traffic.io import (
    gaussian_kernel_adjacency,
    load_traffic,
    read_dcrnn_adjacency,
    read_distance_csv,
    read_h5,
    read_locations,
    read_npz,
)
from metamap.traffic.safe_pickle import load_allowed

# -- real files -----------------------------------------------------------------------


def test_metr_la_week(shared_data):
    folder = shared_data / "traffic"
    data = load_traffic(folder / "metr-la-week.h5", folder / "adj_mx_la.pkl", folder / "graph_sensor_locations_la.csv")
    assert data.values.shape == data.mask.shape == (2016, 207)
    assert data.values.dtype == np.float32 and data.times.dtype == np.dtype("datetime64[ns]")
    assert data.step_minutes == 5 and data.name == "metr-la-week"
    assert data.times[0] == np.datetime64("2012-03-01T00:00")
    assert data.sensor_ids[:2] == ("773869", "767541")
    assert 20 < data.values[data.mask].mean() < 80  # mph
    graph_ids, adjacency = read_dcrnn_adjacency(folder / "adj_mx_la.pkl")
    assert graph_ids == data.sensor_ids and data.adjacency.shape == (207, 207)
    np.testing.assert_array_equal(data.adjacency, adjacency)
    assert np.all(np.diag(data.adjacency) == 1) and data.adjacency.max() <= 1
    assert data.coords.shape == (207, 2)
    np.testing.assert_allclose(data.coords[0], [34.15497, -118.31829])


def test_pems04(shared_data):
    folder = shared_data / "traffic"
    data = load_traffic(folder / "PEMS04.npz", folder / "PEMS04.csv", step_minutes=5)
    assert data.values.shape == (694, 307) and data.sensor_ids[306] == "306"
    raw = np.load(folder / "PEMS04.npz")["data"]
    np.testing.assert_array_equal(data.values, np.where(data.mask, raw[:, :, 2], 0))
    assert 40 < data.values[data.mask].mean() < 80  # speed in mph, not flow
    edges = pd.read_csv(folder / "PEMS04.csv")
    listed = np.zeros((307, 307), dtype=bool)
    listed[edges["from"], edges["to"]] = True
    assert not data.adjacency[~listed].any()
    short = edges[edges["cost"] <= edges["cost"].median()]
    assert np.all(data.adjacency[short["from"], short["to"]] > 0.1)


# -- generated files ------------------------------------------------------------------


def _frame(n_steps: int = 6, ids=("a", "b", "c"), freq: str = "5min") -> pd.DataFrame:
    values = np.arange(1, n_steps * len(ids) + 1, dtype=np.float64).reshape(n_steps, len(ids))
    return pd.DataFrame(values, index=pd.date_range("2020-01-01", periods=n_steps, freq=freq), columns=list(ids))


def _h5(tmp_path, frame, key: str = "df"):
    path = tmp_path / "speeds.h5"
    frame.to_hdf(path, key=key)
    return path


def _dcrnn_pickle(tmp_path, ids, adjacency, name: str = "adj.pkl"):
    path = tmp_path / name
    with open(path, "wb") as file:
        pickle.dump([list(ids), {s: i for i, s in enumerate(ids)}, adjacency], file, protocol=2)
    return path


def test_h5_round_trip_and_missing_values(tmp_path):
    frame = _frame(freq="15min")
    frame.iloc[1, 0] = 0.0
    frame.iloc[2, 2] = np.nan
    values, mask, times, ids, step, zone = read_h5(_h5(tmp_path, frame))
    assert ids == ("a", "b", "c") and step == 15 and zone is None and values.dtype == np.float32
    np.testing.assert_array_equal(times, frame.index.to_numpy("datetime64[ns]"))
    expected_mask = np.ones((6, 3), dtype=bool)
    expected_mask[1, 0] = expected_mask[2, 2] = False
    np.testing.assert_array_equal(mask, expected_mask)
    np.testing.assert_array_equal(values, np.nan_to_num(frame.to_numpy()).astype(np.float32))


def test_npz_round_trip_channels(tmp_path):
    data = np.random.default_rng(0).uniform(1, 2, size=(4, 5, 3)).astype(np.float32)
    data[0, 1, 0] = np.nan
    path = tmp_path / "pems.npz"
    np.savez(path, data=data)
    flow = read_npz(path, channel="flow", start="2021-06-01T08:00", step_minutes=10)
    np.testing.assert_array_equal(flow.values, np.nan_to_num(data[:, :, 0]))
    assert not flow.mask[0, 1] and flow.mask.sum() == 19
    assert flow.sensor_ids == ("0", "1", "2", "3", "4") and flow.step_minutes == 10
    assert flow.times[-1] == np.datetime64("2021-06-01T08:30")
    np.testing.assert_array_equal(read_npz(path, channel=1, step_minutes=5).values, data[:, :, 1])
    np.testing.assert_array_equal(read_npz(path, step_minutes=5).values, data[:, :, 2])
    single = tmp_path / "single.npz"
    np.savez(single, data=data[:, :, 2])
    np.testing.assert_array_equal(load_traffic(single, step_minutes=5).values, data[:, :, 2])


def test_pickles_from_python_3_load(tmp_path):
    content = [["a", "b"], {"a": 0, "b": 1}, np.eye(2, dtype=np.float32), np.float64(2.5), {1, 2}, b"xy"]
    for protocol in (0, 2, 4, 5):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(content, protocol=protocol))
        loaded = load_allowed(path)
        np.testing.assert_array_equal(loaded[2], np.eye(2))
        assert loaded[:2] == content[:2] and loaded[3:] == content[3:]


def test_dcrnn_permutation_is_reordered(tmp_path):
    adjacency = np.array([[1, 0.5, 0], [0, 1, 0.2], [0.3, 0, 1]], dtype=np.float32)  # order c, a, b
    data = load_traffic(_h5(tmp_path, _frame()), _dcrnn_pickle(tmp_path, ["c", "a", "b"], adjacency))
    order = [1, 2, 0]  # a, b, c in the pickle's order
    np.testing.assert_array_equal(data.adjacency, adjacency[np.ix_(order, order)])


def test_silent_sensor(tmp_path):
    frame = _frame()
    frame["b"] = 0.0
    path = _h5(tmp_path, frame)
    with pytest.raises(DataError, match=r"never.*'b'.*drop_silent"):
        load_traffic(path)
    graph = _dcrnn_pickle(tmp_path, ["a", "b", "c"], np.arange(9, dtype=np.float32).reshape(3, 3))
    data = load_traffic(path, graph, drop_silent=True)
    assert data.sensor_ids == ("a", "c") and data.values.shape == (6, 2)
    np.testing.assert_array_equal(data.adjacency, [[0, 2], [6, 8]])


def test_gaussian_kernel_by_hand():
    src, dst, cost = np.array([0, 1, 0]), np.array([1, 2, 2]), np.array([1.0, 2.0, 3.0])
    # sigma = std(1, 2, 3) = sqrt(2/3): w01 = exp(-1.5) = 0.223; exp(-6) and exp(-13.5) fall below 0.1
    expected = np.zeros((3, 3))
    expected[0, 1] = math.exp(-1.5)
    np.testing.assert_allclose(gaussian_kernel_adjacency(src, dst, cost, 3), expected, rtol=1e-6)
    # sigma = 2: exp(-1/4) = 0.779, exp(-1) = 0.368, exp(-9/4) = 0.105 (kept, just above 0.1)
    expected[0, 1], expected[1, 2], expected[0, 2] = math.exp(-0.25), math.exp(-1), math.exp(-2.25)
    np.testing.assert_allclose(gaussian_kernel_adjacency(src, dst, cost, 3, sigma=2.0), expected, rtol=1e-6)
    with_self = gaussian_kernel_adjacency(np.append(src, 2), np.append(dst, 2), np.append(cost, 0.0), 3, sigma=2.0)
    assert with_self[2, 2] == 1 and with_self[0, 0] == 0 and with_self[1, 0] == 0


def test_distance_csv_with_sensor_ids(tmp_path):
    path = tmp_path / "distances.csv"
    path.write_text("from,to,cost\nx,y,1.0\ny,z,2.0\nx,z,3.0\n")
    adjacency = read_distance_csv(path, 3, sensor_ids=("x", "y", "z"), sigma=2.0)
    assert adjacency[0, 1] == pytest.approx(math.exp(-0.25)) and adjacency[1, 0] == 0
    with pytest.raises(DataError, match=r"distances.csv.*not in the data.*'z'"):
        read_distance_csv(path, 2, sensor_ids=("x", "y"))


def test_locations_in_sensor_order(tmp_path):
    path = tmp_path / "locations.csv"
    path.write_text("index,sensor_id,latitude,longitude\n0,a,34.1,-118.2\n1,b,34.2,-118.3\n")
    np.testing.assert_array_equal(read_locations(path, ("b", "a")), [[34.2, -118.3], [34.1, -118.2]])
    with pytest.raises(DataError, match=r"1 missing: 'c'"):
        read_locations(path, ("a", "c"))


# -- bad files ------------------------------------------------------------------------


def test_h5_wrong_key(tmp_path):
    with pytest.raises(DataError, match=r"speeds.h5.*'speed'.*holds 'df'"):
        read_h5(_h5(tmp_path, _frame()), key="speed")


def test_h5_non_monotonic_timestamps(tmp_path):
    frame = _frame()
    frame.index = frame.index[[0, 1, 3, 2, 4, 5]]
    with pytest.raises(DataError, match=r"increasing.*row 3"):
        read_h5(_h5(tmp_path, frame))


def test_h5_duplicate_timestamps(tmp_path):
    frame = _frame()
    frame.index = frame.index[[0, 1, 2, 2, 3, 4]]
    with pytest.raises(DataError, match=r"2020-01-01 00:10:00 repeats at row 3"):
        read_h5(_h5(tmp_path, frame))


def test_h5_irregular_step(tmp_path):
    frame = _frame()
    frame.index = frame.index[[0, 1, 2, 3, 4]].append(pd.DatetimeIndex(["2020-01-01 01:00"]))
    with pytest.raises(DataError, match=r"regular step of 5 min.*rows 4-5"):
        read_h5(_h5(tmp_path, frame))


def test_h5_not_timestamps_or_not_numeric(tmp_path):
    with pytest.raises(DataError, match="DatetimeIndex"):
        read_h5(_h5(tmp_path, _frame().reset_index(drop=True)))
    frame = _frame().astype({"b": str})
    with pytest.raises(DataError, match="non-numeric columns 'b"):
        read_h5(_h5(tmp_path, frame))


def test_npz_bad_key_ndim_and_channel(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, speed=np.ones((4, 3)))
    with pytest.raises(DataError, match=r"bad.npz.*'data'.*holds 'speed'"):
        read_npz(path)
    np.savez(path, data=np.ones(4))
    with pytest.raises(ShapeError, match=r"\[time, node, channel\].*float64\[4\]"):
        read_npz(path)
    np.savez(path, data=np.ones((4, 3, 3)))
    with pytest.raises(ConfigError, match="'velocity'"):
        read_npz(path, channel="velocity")
    with pytest.raises(ConfigError, match=r"\[0, 3\).*got 3"):
        read_npz(path, channel=3)


def test_adjacency_wrong_size_or_ids(tmp_path):
    data = _h5(tmp_path, _frame())
    with pytest.raises(DataError, match="data's 3 sensors, got 2"):
        load_traffic(data, _dcrnn_pickle(tmp_path, ["a", "b"], np.eye(2)))
    with pytest.raises(DataError, match=r"data has 'c'.*graph has 'd'"):
        load_traffic(data, _dcrnn_pickle(tmp_path, ["a", "b", "d"], np.eye(3)))
    with pytest.raises(ShapeError, match=r"\[3, 3\].*float64\[3, 2\]"):
        read_dcrnn_adjacency(_dcrnn_pickle(tmp_path, ["a", "b", "c"], np.ones((3, 2))))


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"echo pwned > {self.marker}",)


def test_malicious_pickle_runs_nothing(tmp_path):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "adj.pkl"
    path.write_bytes(pickle.dumps([["a"], {"a": 0}, _Exploit(marker)], protocol=2))
    with pytest.raises(DataError, match=r"adj.pkl.*global (os|posix)\.system.*not allowed"):
        read_dcrnn_adjacency(path)
    assert not marker.exists()


def test_corrupt_pickle(tmp_path):
    path = _dcrnn_pickle(tmp_path, ["a"], np.eye(1))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_allowed(path)


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"'\.parquet'.*\.h5.*\.npz"):
        load_traffic(tmp_path / "speeds.parquet")
    with pytest.raises(ConfigError, match=r"'\.json'.*\.pkl.*\.csv"):
        load_traffic(_h5(tmp_path, _frame()), tmp_path / "graph.json")
    with pytest.raises(DataError, match="no such file"):
        load_traffic(tmp_path / "absent.h5")


def test_distance_csv_bad_columns_and_costs(tmp_path):
    path = tmp_path / "distances.csv"
    path.write_text("src,dst,km\n0,1,1.0\n")
    with pytest.raises(DataError, match="from, to, cost, got src, dst, km"):
        read_distance_csv(path, 2)
    path.write_text("from,to,cost\n0,1,-1.0\n1,0,2.0\n")
    with pytest.raises(DataError, match=r"distances.csv.*>= 0.*-1\.0"):
        read_distance_csv(path, 2)
    path.write_text("from,to,cost\n0,5,1.0\n1,0,2.0\n")
    with pytest.raises(DataError, match=r"'to'.*\[0, 2\).*5"):
        read_distance_csv(path, 2)


def test_safe_reader_equals_pandas_on_the_real_file(shared_data):
    """Index (with freq), sensor-id columns and values exactly as pandas.read_hdf reads them."""
    from metamap.safe_hdf import read_frame

    path = shared_data / "traffic" / "metr-la-week.h5"
    pd.testing.assert_frame_equal(read_frame(path), pd.read_hdf(path, "df"))


@pytest.mark.parametrize("table", [False, True])
def test_safe_reader_equals_pandas_on_written_frames(tmp_path, table):
    """Integer sensor ids, several dtype blocks, a named index with freq, and (fixed layout) a time zone."""
    from metamap.safe_hdf import read_frame

    index = pd.date_range("2020-03-29", periods=6, freq="15min", name="time", tz=None if table else "Europe/Paris")
    frame = pd.DataFrame({717: np.arange(6.0), 718: np.arange(6), 719: [np.nan, 1.0, np.inf, 0.0, -1.0, 2.0]}, index)
    path = tmp_path / "frame.h5"
    frame.to_hdf(path, key="speed/la", format="table" if table else "fixed")
    pd.testing.assert_frame_equal(read_frame(path, "speed/la", isolate=False), pd.read_hdf(path, "speed/la"))


# -- the file's own time step, time zone and missing-value codes ------------------------


@pytest.mark.parametrize(
    ("freq", "minutes", "per_day"), [("5min", 5, 288), ("15min", 15, 96), ("1h", 60, 24), ("1D", 1440, 1)]
)
def test_h5_step_comes_from_the_index(tmp_path, freq, minutes, per_day):
    data = load_traffic(_h5(tmp_path, _frame(n_steps=8, freq=freq)))
    assert data.step_minutes == minutes and data.steps_per_day == per_day
    assert load_traffic(_h5(tmp_path, _frame(n_steps=8, freq=freq)), step_minutes=minutes).step_minutes == minutes


def test_h5_step_that_contradicts_the_index_or_does_not_divide_a_day(tmp_path):
    with pytest.raises(ConfigError, match=r"speeds.h5 has 60-minute steps, but 5 min was given"):
        load_traffic(_h5(tmp_path, _frame(freq="1h")), step_minutes=5)
    with pytest.raises(DataError, match=r"divides a day.*got 7 min"):
        read_h5(_h5(tmp_path, _frame(freq="7min")))


@pytest.mark.parametrize("minutes", [5, 15, 60, 1440])
def test_npz_step_is_given_or_stored(tmp_path, minutes):
    path = tmp_path / "pems.npz"
    np.savez(path, data=np.ones((4, 2)))
    with pytest.raises(ConfigError, match=r"pems.npz: a .npz file has no timestamps.*--step"):
        load_traffic(path)
    given = load_traffic(path, step_minutes=minutes, start="2021-06-01")
    assert given.step_minutes == minutes and given.times[1] - given.times[0] == np.timedelta64(minutes, "m")
    np.savez(path, data=np.ones((4, 2)), step_minutes=np.int64(minutes))
    assert load_traffic(path).step_minutes == minutes == load_traffic(path, step_minutes=minutes).step_minutes
    with pytest.raises(ConfigError, match=rf"stores {minutes}-minute steps, but 7 min was given"):
        load_traffic(path, step_minutes=7)


def test_tz_aware_index_keeps_local_wall_clock_time(tmp_path):
    """Los Angeles midnight on Saturday 2020-03-07 stays midnight and Saturday (UTC would say 08:00);
    the step is elapsed time, regular across the daylight-saving change of 2020-03-08 02:00."""
    from metamap.traffic.features import calendar_features, minutes_of_day

    frame = _frame(n_steps=48)
    frame.index = pd.date_range("2020-03-07", periods=48, freq="1h", tz="America/Los_Angeles")
    data = load_traffic(_h5(tmp_path, frame))
    assert data.timezone == "America/Los_Angeles" and data.step_minutes == 60
    assert data.times[0] == np.datetime64("2020-03-07T00:00") and data.times[-1] == np.datetime64("2020-03-09T00:00")
    np.testing.assert_array_equal(minutes_of_day(data.times[:3]), [0, 60, 120])
    np.testing.assert_allclose(calendar_features(data.times[:1]), [[0, 1, 1]], atol=1e-7)  # midnight, weekend


def test_sentinels_zeros_and_negative_readings(tmp_path):
    frame = _frame()
    frame.iloc[1, 0] = -1.0
    frame.iloc[2, 1] = 0.0
    frame.iloc[3, 2] = 9999.0
    path = _h5(tmp_path, frame)
    with pytest.raises(
        DataError, match=r"speeds.h5: expected non-negative readings, got 1 negative values \(-1.0\).*--missing-value"
    ):
        load_traffic(path)
    masked = load_traffic(path, missing_values=(-1, 9999))
    expected = np.ones((6, 3), dtype=bool)
    expected[1, 0] = expected[2, 1] = expected[3, 2] = False
    np.testing.assert_array_equal(masked.mask, expected)
    assert masked.values[1, 0] == masked.values[3, 2] == 0
    counts = load_traffic(path, missing_values=(-1, 9999), zero_is_missing=False)
    assert counts.mask[2, 1] and counts.values[2, 1] == 0 and counts.mask.sum() == 16
    npz = tmp_path / "flow.npz"
    np.savez(npz, data=frame.to_numpy())
    np.testing.assert_array_equal(load_traffic(npz, step_minutes=5, missing_values=(-1, 9999)).mask, expected)


def test_distance_csv_must_cover_every_sensor(tmp_path):
    path = tmp_path / "distances.csv"
    path.write_text("from,to,cost\nw,x,1.0\nx,w,2.0\n")
    with pytest.raises(
        DataError, match=r"distances.csv: expected distances for all 4 sensors.*2 are in no row, e.g. 'y', 'z'$"
    ):
        read_distance_csv(path, 4, sensor_ids=("w", "x", "y", "z"))
    path.write_text("from,to,cost\n0,1,1.0\n1,0,2.0\n")
    with pytest.raises(DataError, match=r"1 are in no row, e.g. '2'$"):
        read_distance_csv(path, 3)


@pytest.mark.parametrize(
    ("text", "minutes"), [("5min", 5), ("15min", 15), ("1h", 60), ("1day", 1440), ("90 minutes", 90)]
)
def test_time_step_argument(text, minutes):
    from metamap.arguments import time_step

    assert time_step(text) == minutes


@pytest.mark.parametrize("text", ["soon", "", "30s", "0min", "-5min", "nat"])
def test_time_step_argument_refuses(text):
    import argparse

    from metamap.arguments import time_step

    with pytest.raises(argparse.ArgumentTypeError, match="expected a time step"):
        time_step(text)


# -- resampling -----------------------------------------------------------------------


def test_resampled_averages_the_observed_readings_of_each_block():
    from metamap.traffic.data import TrafficData

    times = (np.datetime64("2024-03-04T00:00") + np.arange(7) * np.timedelta64(5, "m")).astype("datetime64[ns]")
    values = np.array([[1, 10], [2, 0], [6, 0], [4, 5], [5, 7], [9, 9], [3, 3]], dtype=np.float32)
    mask = np.array([[1, 1], [1, 0], [1, 0], [0, 1], [1, 1], [0, 1], [1, 1]], dtype=bool)
    data = TrafficData(values * mask, mask, times, ("a", "b"), step_minutes=5)
    coarse = data.resampled(15)
    assert coarse.step_minutes == 15 and coarse.n_steps == 2  # the 7th step does not fill a block
    np.testing.assert_allclose(coarse.values, [[3.0, 10.0], [5.0, 7.0]])
    assert coarse.mask.tolist() == [[True, True], [True, True]]
    np.testing.assert_array_equal(coarse.times, times[[0, 3]])
    gap = TrafficData(values[:3] * 0, np.zeros((3, 2), dtype=bool), times[:3], ("a", "b"), step_minutes=5)
    assert not gap.resampled(15).mask.any()
    with pytest.raises(ConfigError, match="multiple of the data's 5-minute step"):
        data.resampled(7)
    with pytest.raises(ConfigError, match="divides a day"):
        data.resampled(35)


def test_la_week_at_15_minutes_keeps_its_days(shared_data):
    folder = shared_data / "traffic"
    la = load_traffic(folder / "metr-la-week.h5", folder / "adj_mx_la.pkl", folder / "graph_sensor_locations_la.csv")
    coarse = la.resampled(15)
    assert coarse.steps_per_day == 96 and coarse.n_steps == la.n_steps // 3
    np.testing.assert_allclose(coarse.values[coarse.mask].mean(), la.values[la.mask].mean(), rtol=0.01)
