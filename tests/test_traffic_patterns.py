"""Traffic patterns: the labelling rule, sensor-day cutting, ProtoNet few-shot assignment, run_patterns."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from metamap.errors import ConfigError, DataError
from metamap.tasks.family import make_generator
from metamap.traffic.data import TrafficData
from metamap.traffic.patterns import (
    PATTERNS,
    PatternEpisodes,
    ProfileClusters,
    SpeedRule,
    class_counts,
    few_shot_scores,
    label_profiles,
    mean_silhouette,
    run_patterns,
    sensor_days,
    sensor_patterns,
    train_protonet,
)

BINS = 96  # 15-minute bins
DIPS = {  # congested hours of each pattern in the synthetic city
    "free_flow": [],
    "morning_peak": [(7.0, 9.5)],
    "evening_peak": [(16.0, 19.0)],
    "both_peaks": [(7.0, 9.5), (16.0, 19.0)],
    "all_day_congestion": [(7.0, 19.0)],
}


def profile(*dips: tuple[float, float], depth: float = 0.4) -> np.ndarray:
    """A 96-bin profile at free flow (1.0) with ``depth`` between the given hours."""
    hours = np.arange(BINS) / 4.0
    out = np.ones(BINS)
    for start, stop in dips:
        out[(hours >= start) & (hours < stop)] = depth
    return out


def synthetic_city(n_sensors: int, n_days: int, seed: int, coords: bool = True) -> TrafficData:
    """5-minute speeds (mph) where sensor s on day d follows pattern ``(s + d) % 5``, with jitter and noise."""
    rng = np.random.default_rng(seed)
    hours = np.arange(288) / 12.0
    days = []
    for d in range(n_days):
        day = np.empty((288, n_sensors))
        for s in range(n_sensors):
            free = rng.uniform(55, 70)
            speed = np.full(288, free)
            shift = rng.uniform(-0.5, 0.5)
            for start, stop in DIPS[PATTERNS[(s + d) % 5]]:
                speed[(hours >= start + shift) & (hours < stop + shift)] = free * rng.uniform(0.3, 0.55)
            day[:, s] = speed * (1 + 0.03 * rng.standard_normal(288))
        days.append(day)
    values = np.concatenate(days).astype(np.float32)
    times = np.datetime64("2024-01-01T00:00", "ns") + np.arange(values.shape[0]) * np.timedelta64(5, "m")
    return TrafficData(
        values=values,
        mask=values > 0,
        times=times,
        sensor_ids=tuple(f"s{i}" for i in range(n_sensors)),
        step_minutes=5,
        coords=rng.uniform([34.0, -118.5], [34.2, -118.2], size=(n_sensors, 2)) if coords else None,
        name=f"synthetic{seed}",
    )


def pattern(name: str) -> int:
    return PATTERNS.index(name)


def test_rule_labels_hand_made_profiles():
    profiles = np.stack(
        [
            profile(),  # flat
            profile((7, 9)),  # 2 h dip at 08:00
            profile((16, 18.5)),
            profile((7, 9), (17, 19)),
            profile((6.5, 19.5), depth=0.5),
            profile((8, 8.5)),  # 30 min: not sustained
            profile((1, 4)),  # at night: not a pattern
            profile((7, 9), depth=0.8),  # shallow: above 70% of free flow
        ]
    )
    expected = [
        "free_flow",
        "morning_peak",
        "evening_peak",
        "both_peaks",
        "all_day_congestion",
        "free_flow",
        "free_flow",
        "free_flow",
    ]
    assert [PATTERNS[i] for i in label_profiles(profiles)] == expected


def test_rule_counts_missing_bins_as_not_congested():
    dip = profile((7, 9))
    dip[28:36] = np.nan  # 07:00-09:00 unknown
    assert PATTERNS[label_profiles(dip[None])[0]] == "free_flow"


def test_sensor_days_cut_at_midnight_and_skip_days_with_many_gaps():
    steps = 3 * 288  # noon on Jan 1 to noon on Jan 4: whole days are Jan 2 and Jan 3
    times = np.datetime64("2024-01-01T12:00", "ns") + np.arange(steps) * np.timedelta64(5, "m")
    values = np.full((steps, 2), 60.0, dtype=np.float32)
    mask = np.ones((steps, 2), dtype=bool)
    jan2, jan3 = 144, 144 + 288
    mask[jan2 : jan2 + 72, 1] = False  # 25% of Jan 2 missing: skipped
    mask[jan3 : jan3 + 31, 1] = False  # 11% of Jan 3 missing: kept
    data = TrafficData(values=np.where(mask, values, 0), mask=mask, times=times, sensor_ids=("a", "b"), step_minutes=5)
    days = sensor_days(data)
    assert len(days) == 3
    assert days.sensor.tolist() == [0, 0, 1]
    assert [str(d) for d in days.day] == ["2024-01-02", "2024-01-03", "2024-01-03"]
    assert days.profiles.shape == (3, BINS)
    assert np.isnan(days.profiles[2, :10]).all() and not np.isnan(days.profiles[2, 10:]).any()
    np.testing.assert_allclose(days.filled(), 1.0)  # speed / free flow, gaps interpolated
    np.testing.assert_allclose(days.scale, 60.0)


def test_sensor_days_need_a_whole_day():
    data = synthetic_city(3, 1, seed=0).steps(6, 288)
    with pytest.raises(DataError, match="whole calendar day"):
        sensor_days(data)


def test_synthetic_city_gets_the_intended_rule_labels():
    days = sensor_days(synthetic_city(10, 5, seed=0))
    intended = (days.sensor + (days.day - days.day.min()).astype(int)) % 5
    np.testing.assert_array_equal(SpeedRule().label(days.profiles), intended)


def test_episodes_hold_k_shot_of_each_drawn_class():
    days = sensor_days(synthetic_city(10, 4, seed=1))
    labels = torch.from_numpy(SpeedRule().label(days.profiles))
    family = PatternEpisodes(
        torch.from_numpy(days.filled()), labels, {"train": torch.arange(len(days))}, n_way=3, k_shot=2, n_query=4
    )
    episode = family.sample(6, make_generator(0))
    assert episode.x_support.shape == (6, 6, BINS) and episode.x_query.shape == (6, 12, BINS)
    classes = episode.meta["classes"]  # [T, n_way]: the pattern behind label 0, 1, 2
    support_patterns = torch.from_numpy(label_profiles(episode.x_support.flatten(0, 1).numpy())).view(6, 6)
    assert torch.equal(support_patterns, classes.repeat_interleave(2, dim=1))
    assert all(len(set(row.tolist())) == 3 for row in classes)


def test_episodes_name_the_short_patterns():
    days = sensor_days(synthetic_city(5, 2, seed=2))  # 2 days of each pattern
    with pytest.raises(DataError, match="k_shot \\+ n_query = 10"):
        PatternEpisodes(
            torch.from_numpy(days.filled()),
            torch.from_numpy(SpeedRule().label(days.profiles)),
            {"train": torch.arange(len(days))},
        )


def test_protonet_beats_chance_on_separable_patterns():
    source = sensor_days(synthetic_city(40, 10, seed=3))
    target = sensor_days(synthetic_city(20, 5, seed=4))
    learner, summary = train_protonet(source, SpeedRule(), steps=40, meta_batch=8)
    assert summary["val_accuracy"]["mean"] > 0.8
    x, labels = torch.from_numpy(target.filled()), torch.from_numpy(SpeedRule().label(target.profiles))
    scores = few_shot_scores(learner, x, labels, {1: range(5)}, draws=10, generator=make_generator(0))
    assert scores["1"]["protonet"]["mean"] > 0.8  # chance: 0.2
    assert scores["1"]["nearest_centroid"]["mean"] == scores["1"]["knn1"]["mean"]  # one example per class


def test_sensor_majority_pattern():
    day_patterns = np.array([1, 1, 2, 0, 4, 4, 4])
    sensor = np.array([0, 0, 0, 2, 2, 2, 2])
    assert sensor_patterns(day_patterns, sensor, 3).tolist() == [1, -1, 4]


def test_run_patterns_writes_plots_and_finite_scores(tmp_path):
    source, target = synthetic_city(40, 10, seed=5), synthetic_city(20, 5, seed=6)
    result = run_patterns(source, target, tmp_path, steps=15, draws=5)
    assert (tmp_path / "prototypes.png").stat().st_size > 0
    assert (tmp_path / "sensor_map.png").stat().st_size > 0
    assert result["plots"]["map"] == str(tmp_path / "sensor_map.png") and result["notes"] == []
    for by_method in result["accuracy"].values():
        assert set(by_method) == {"protonet", "nearest_centroid", "knn1"}
        assert all(math.isfinite(s["mean"]) and 0 <= s["mean"] <= 1 for s in by_method.values())
    assert set(result["accuracy"]) == {"1", "5"}
    assert result["class_counts"]["target"] == {name: 20 for name in PATTERNS}
    assert len(result["sensor_majority"]["patterns"]) == 20
    assert (tmp_path / "patterns.json").is_file()


def test_target_without_coords_gives_no_map(tmp_path):
    source, target = synthetic_city(40, 10, seed=7), synthetic_city(20, 5, seed=8, coords=False)
    result = run_patterns(source, target, tmp_path, steps=5, draws=3, shots=(1,))
    assert result["plots"]["map"] is None
    assert not (tmp_path / "sensor_map.png").exists()
    assert "no sensor coordinates" in result["notes"][0]


def test_target_with_one_pattern_is_refused(tmp_path):
    source = synthetic_city(40, 10, seed=9)
    target = synthetic_city(5, 2, seed=10)
    quiet = TrafficData(
        values=np.full_like(target.values, 60.0),
        mask=target.mask,
        times=target.times,
        sensor_ids=target.sensor_ids,
        step_minutes=target.step_minutes,
    )
    with pytest.raises(DataError, match="at least 2 patterns with 4 sensor-days.*'free_flow': 10"):
        run_patterns(source, quiet, tmp_path, steps=5, labels="rule")  # whole-number speeds would read as counts


def test_real_la_has_every_pattern(shared_data):
    path = shared_data / "traffic" / "metr-la-week.h5"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    frame = pd.read_hdf(path, "df")
    values = frame.to_numpy(dtype=np.float32)
    data = TrafficData(
        values=values,
        mask=values > 0,
        times=frame.index.to_numpy(dtype="datetime64[ns]"),
        sensor_ids=tuple(str(c) for c in frame.columns),
        step_minutes=5,
    )
    days = sensor_days(data)
    assert len(days) == 207 * 7
    counts = class_counts(SpeedRule().label(days.profiles), SpeedRule())
    assert min(counts.values()) >= 90, counts


# --------------------------------------------------------------------------- patterns of counts: clusters

SHAPES = {  # hourly count profiles of three kinds of sensor (per hour of day, before noise)
    "commute": np.array([2, 1, 1, 1, 2, 8, 30, 60, 50, 20, 15, 15, 15, 15, 20, 30, 55, 60, 30, 15, 10, 6, 4, 3]),
    "leisure": np.array([5, 3, 2, 1, 1, 1, 2, 4, 8, 15, 25, 35, 45, 50, 50, 45, 40, 35, 30, 25, 20, 15, 10, 7]),
    "night": np.array([40, 45, 45, 40, 30, 20, 10, 5, 3, 2, 2, 2, 2, 2, 2, 3, 4, 6, 10, 15, 20, 25, 30, 35]),
}


def counting_city(n_sensors: int, n_days: int, seed: int) -> tuple[TrafficData, np.ndarray]:
    """Hourly Poisson counts: sensor s follows shape ``s % 3`` every day, at its own level. Returns the data and
    the intended shape of each sensor."""
    rng = np.random.default_rng(seed)
    kinds = np.arange(n_sensors) % 3
    level = rng.uniform(2, 6, size=n_sensors)
    rates = np.stack([SHAPES[name] for name in SHAPES])[kinds].T * level  # [24, N]
    values = rng.poisson(np.tile(rates, (n_days, 1))).astype(np.float32)
    times = np.datetime64("2024-03-04T00:00", "ns") + np.arange(24 * n_days) * np.timedelta64(1, "h")
    data = TrafficData(
        values=values,
        mask=np.ones_like(values, dtype=bool),
        times=times,
        sensor_ids=tuple(f"c{i}" for i in range(n_sensors)),
        step_minutes=60,
        name=f"counts{seed}",
    )
    return data, kinds


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two labelings group the items identically (up to renaming the groups)."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_silhouette_matches_its_definition_computed_point_by_point():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    labels = rng.integers(0, 3, size=40)
    labels[0] = 3  # a lone point scores 0
    expected = []
    for i in range(40):
        distance = np.linalg.norm(x - x[i], axis=1)
        mates = (labels == labels[i]) & (np.arange(40) != i)
        if not mates.any():
            expected.append(0.0)
            continue
        a = distance[mates].mean()
        b = min(distance[labels == c].mean() for c in set(labels.tolist()) if c != labels[i])
        expected.append((b - a) / max(a, b))
    assert mean_silhouette(x, labels) == pytest.approx(np.mean(expected), abs=1e-7)
    assert mean_silhouette(x, np.zeros(40, dtype=np.int64)) == -1.0


def test_clusters_find_the_three_kinds_of_count_profile():
    data, kinds = counting_city(30, 20, seed=0)
    days = sensor_days(data)
    assert days.profiles.shape == (600, 24)  # hourly data: hourly bins
    clusters = ProfileClusters.fit(days.filled(), seed=0)
    assert clusters.choice.settings["k"] == 3 and clusters.choice.grid["k"] == list(range(2, 9))
    assert same_partition(clusters.label(days.profiles), kinds[days.sensor])
    np.testing.assert_allclose(clusters.shares, 1 / 3)
    summary = clusters.summary()
    assert summary["k"] == 3 and not summary["k_at_largest_tried"]
    assert max(summary["silhouette_by_k"], key=summary["silhouette_by_k"].get) == "3"


def test_clusters_label_days_with_gaps_by_their_observed_bins():
    data, kinds = counting_city(9, 10, seed=1)
    days = sensor_days(data)
    clusters = ProfileClusters.fit(days.filled(), seed=0)
    gappy = days.profiles.copy()
    gappy[:, 6:12] = np.nan  # the morning unknown
    np.testing.assert_array_equal(clusters.label(gappy), clusters.label(days.profiles))


def test_speed_rule_mislabels_counts_where_clusters_do_not():
    data, kinds = counting_city(30, 10, seed=2)
    days = sensor_days(data)
    rule = SpeedRule().label(days.profiles)
    assert not same_partition(rule, kinds[days.sensor])  # the rule reads the night's low counts as congestion
    assert same_partition(ProfileClusters.fit(days.filled()).label(days.profiles), kinds[days.sensor])


def test_run_patterns_on_hourly_counts_uses_clusters(tmp_path):
    source, _ = counting_city(30, 14, seed=3)
    target, _ = counting_city(12, 7, seed=4)
    result = run_patterns(source, target, tmp_path, steps=15, draws=5, shots=(1,))
    assert result["labels"]["kind"] == "clusters" and result["labels"]["k"] == 3
    assert result["bin_minutes"] == 60
    assert sorted(result["class_counts"]["target"].values()) == [28, 28, 28]
    assert result["accuracy"]["1"]["nearest_centroid"]["mean"] > 0.9
    assert (tmp_path / "prototypes.png").stat().st_size > 0


class PeakHalf:
    """A user's own rule: whether a day's busiest hour is before or after noon."""

    names = ("morning_busiest", "afternoon_busiest")
    profile_axis = "count"
    threshold = None

    def label(self, profiles):
        filled = np.where(np.isnan(profiles), -np.inf, profiles)
        return (filled.argmax(axis=1) >= profiles.shape[1] // 2).astype(np.int64)

    def summary(self):
        return {"kind": "peak half", "names": list(self.names)}


def test_run_patterns_takes_a_users_own_rule(tmp_path):
    source, _ = counting_city(20, 10, seed=3)
    target, _ = counting_city(8, 7, seed=4)
    result = run_patterns(source, target, tmp_path, steps=5, draws=3, shots=(1,), labels=PeakHalf())
    assert result["labels"] == PeakHalf().summary()
    assert set(result["class_counts"]["target"]) <= set(PeakHalf.names)
    assert sum(result["class_counts"]["target"].values()) == 8 * 7


def test_profile_bins_must_resolve_hours():
    daily = TrafficData(
        values=np.ones((30, 2), dtype=np.float32),
        mask=np.ones((30, 2), dtype=bool),
        times=np.datetime64("2024-01-01", "ns") + np.arange(30) * np.timedelta64(1, "D"),
        sensor_ids=("a", "b"),
        step_minutes=24 * 60,
    )
    with pytest.raises(ConfigError, match="at least 24 bins a day.*1440-minute data is too coarse"):
        sensor_days(daily)
    with pytest.raises(ConfigError, match="--bin 7min must be a multiple"):
        sensor_days(synthetic_city(2, 2, seed=0), bin_minutes=7)
    assert sensor_days(synthetic_city(2, 2, seed=0), bin_minutes=60).profiles.shape[1] == 24
