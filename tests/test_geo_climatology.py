"""Seasonal climatology (harmonics of the year fraction on cftime calendars) and precipitation transforms:
known answers on generated fields."""

from __future__ import annotations

import datetime

import cftime
import numpy as np
import pytest

from metamap.errors import ConfigError, DataError
from metamap.geo import baselines
from metamap.geo.climatology import SeasonalClimatology, auto_harmonics, year_fraction
from metamap.geo.transforms import choose_transform, dry_accuracy, fraction_negative

CALENDARS = {"360_day": 360, "noleap": 365, "all_leap": 366, "standard": 365, "proleptic_gregorian": 365}


def _daily(calendar: str, year: int = 2095) -> np.ndarray:
    n = CALENDARS[calendar]
    start = cftime.datetime(year, 1, 1, calendar=calendar)
    return np.array([start + datetime.timedelta(days=d) for d in range(n)], dtype=object)


@pytest.mark.parametrize("calendar", sorted(CALENDARS))
def test_year_fraction_is_days_over_the_calendars_year(calendar):
    times = _daily(calendar)
    fraction = year_fraction(times, calendar)
    np.testing.assert_allclose(fraction, np.arange(len(times)) / CALENDARS[calendar], atol=1e-12)


def test_year_fraction_of_numpy_dates_counts_leap_years():
    times = np.array(["2024-01-01", "2024-07-02T12:00", "2023-12-31"], dtype="datetime64[ns]")
    np.testing.assert_allclose(year_fraction(times, "standard"), [0.0, 183.5 / 366, 364 / 365])
    with pytest.raises(DataError, match="not dates"):
        year_fraction(np.arange(3.0), "standard")


@pytest.mark.parametrize("calendar", sorted(CALENDARS))
def test_harmonic_fit_recovers_a_generated_seasonal_cycle(calendar):
    times = _daily(calendar)
    f = year_fraction(times, calendar)
    rng = np.random.default_rng(0)
    base, amp1, amp2 = rng.normal(280, 5, (4, 5)), rng.uniform(3, 10, (4, 5)), rng.uniform(0.5, 2, (4, 5))
    truth = base + amp1 * np.cos(2 * np.pi * f - 0.3)[:, None, None] + amp2 * np.sin(4 * np.pi * f)[:, None, None]
    values = truth + rng.normal(0, 0.5, truth.shape)
    values[::7, 1, 1] = np.nan  # missing times are skipped
    values[:, 3, 4] = np.nan  # a pixel never valid gets 0
    clim = SeasonalClimatology.fit(values, f)
    assert clim.harmonics == 3
    predicted = clim.predict(f)
    error = np.abs(predicted - truth)[:, np.isfinite(values).any(axis=0)]
    assert error.max() < 0.5
    assert np.all(predicted[:, 3, 4] == 0)
    mean_error = np.abs(np.nanmean(values[:, :3], axis=0) - truth[:, :3]).max()
    assert mean_error > 3  # the per-pixel mean is far off in some season


def test_one_month_falls_back_to_the_mean():
    times = _daily("standard")[:31]
    f = year_fraction(times, "standard")
    assert auto_harmonics(f) == 0
    values = np.random.default_rng(1).normal(size=(31, 3, 3))
    clim = SeasonalClimatology.fit(values, f)
    assert clim.harmonics == 0
    np.testing.assert_allclose(clim.predict(f[:2]), np.broadcast_to(values.mean(axis=0), (2, 3, 3)))


def test_training_days_of_every_month_keep_three_harmonics():
    times = _daily("360_day")
    f = year_fraction(times, "360_day")
    days = np.array([t.day for t in times])
    assert auto_harmonics(f[days <= 20]) == 3
    assert auto_harmonics(f[:120]) == 0  # four months: the year is not covered


def test_precipitation_transform_is_detected_and_returns_dry_non_negative_values():
    transform = choose_transform({"units": "kg m-2 s-1"})
    assert transform.kind == "log1p" and transform.to_mm_per_day == 86400
    assert choose_transform({"units": "K"}).kind == "none"
    assert choose_transform({"units": "m", "standard_name": "precipitation_amount"}, "none").kind == "none"
    with pytest.raises(ConfigError, match="precipitation units"):
        choose_transform({"units": "K"}, "power")
    rate = np.array([0.0, 0.05, 0.2, 5.0, 40.0, np.nan]) / 86400
    for kind in ("log1p", "power"):
        t = choose_transform({"units": "mm s-1"}, kind)
        back = t.inverse(t.forward(rate))
        np.testing.assert_allclose(back[2:5], rate[2:5], rtol=1e-6)
        assert back[0] == 0 and back[1] == 0 and np.isnan(back[5])  # below 0.1 mm/day: dry
        assert fraction_negative(t.inverse(np.array([-3.0, -0.1, 0.5]))) == 0


def test_dry_metrics():
    assert fraction_negative(np.array([-1.0, 0.0, 2.0, np.nan])) == pytest.approx(1 / 3)
    assert dry_accuracy(np.array([0.0, 0.5, 0.0]), np.array([0.0, 0.0, 0.0]), 0.1) == pytest.approx(2 / 3)


def test_kriging_of_dry_and_nearly_dry_days_stays_non_negative():
    lat, lon = np.linspace(42, 45, 12), np.linspace(-75, -72, 12)
    observed = np.random.default_rng(0).random((12, 12)) > 0.7
    dry = np.zeros((12, 12))
    mean, variance = baselines.ordinary_kriging(dry, observed, lat, lon, nonnegative=True)
    assert np.all(mean == 0) and np.all(variance == 0)
    one_wet = dry.copy()
    one_wet[np.nonzero(observed)[0][0], np.nonzero(observed)[1][0]] = 3.0
    raw, _ = baselines.ordinary_kriging(one_wet, observed, lat, lon)
    clipped, _ = baselines.ordinary_kriging(one_wet, observed, lat, lon, nonnegative=True)
    assert raw.min() < 0 and clipped.min() == 0


def _seasonal_file(tmp_path, calendar="360_day", units="K", rain=False):
    """A year of daily fields on ``calendar`` with a known annual cycle ``10 cos(2 pi f)`` (or daily rain)."""
    import xarray as xr

    times = _daily(calendar)
    f = year_fraction(times, calendar)
    rng = np.random.default_rng(3)
    if rain:
        wet = rng.random((len(times), 6, 7)) < 0.5 + 0.3 * np.cos(2 * np.pi * f)[:, None, None]
        values = np.where(wet, rng.gamma(0.8, 4.0, wet.shape), 0.0) / 86400.0
    else:
        values = 280 + 10 * np.cos(2 * np.pi * f)[:, None, None] + rng.normal(0, 1, (len(times), 6, 7))
    ds = xr.Dataset(
        {"v": (("time", "lat", "lon"), values.astype(np.float32), {"units": units})},
        coords={"time": times, "lat": np.linspace(50, 55, 6), "lon": np.linspace(0, 6, 7)},
    )
    path = tmp_path / "year.nc"
    ds.to_netcdf(path)
    from metamap.geo.io import open_field

    return open_field(path, "v"), values, f


def test_the_model_space_removes_a_known_seasonal_cycle_on_a_360_day_calendar(tmp_path):
    from metamap.geo.data import scan_training

    field, values, f = _seasonal_file(tmp_path)
    days = field.day_of_month()  # --train-days works on cftime calendars
    train = np.flatnonzero(days <= 20)
    scaler, _ = scan_training(field, train, choose_transform(field.attrs), max_times=400)
    assert scaler.climatology.harmonics == 3
    np.testing.assert_allclose(scaler.climatology_field(f)[:, 2, 3], 280 + 10 * np.cos(2 * np.pi * f), atol=0.6)
    test = np.flatnonzero(days > 20)
    z = scaler.to_model(values[test], f[test])
    assert abs(float(z.mean())) < 0.1 and 0.8 < float(z.std()) < 1.2  # the anomaly is the unit noise
    np.testing.assert_allclose(scaler.from_model(z, f[test]), values[test], rtol=1e-5)  # round trip


def test_rain_in_model_space_comes_back_non_negative_and_dry(tmp_path):
    from metamap.geo.data import scan_training

    field, values, f = _seasonal_file(tmp_path, "noleap", units="kg m-2 s-1", rain=True)
    scaler, _ = scan_training(field, np.arange(0, 365, 2), choose_transform(field.attrs), max_times=400)
    assert scaler.transform.kind == "log1p"
    z = scaler.to_model(values[1::2], f[1::2])
    noisy = scaler.from_model(z + np.random.default_rng(0).normal(0, 1.0, z.shape), f[1::2])
    assert fraction_negative(noisy) == 0.0
    assert np.all((noisy == 0) | (noisy >= 0.1 / 86400 * (1 - 1e-6)))  # dry pixels exactly dry
    back = scaler.from_model(z, f[1::2])
    wet = values[1::2] >= 0.1 / 86400
    np.testing.assert_allclose(back[wet], values[1::2][wet], rtol=1e-4)
    assert np.all(back[~wet] == 0)
