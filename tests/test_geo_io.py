"""netCDF / zarr in and out: axis names, latitude order, CF attributes, round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from metamap.errors import ConfigError, DataError
from metamap.geo.io import open_field, write_ensemble


def _dataset(time_name="time", lat_name="lat", lon_name="lon", ascending=False, n_times=5):
    lat = np.linspace(50, 54, 5)
    lat = lat if ascending else lat[::-1]
    lon = np.linspace(-4, 2, 7)
    values = np.arange(n_times * 5 * 7, dtype=np.float32).reshape(n_times, 5, 7) + 270
    times = pd.date_range("2019-03-01", periods=n_times, freq="h")
    ds = xr.Dataset({"t2m": ((time_name, lat_name, lon_name), values,
                             {"units": "K", "long_name": "2 metre temperature", "standard_name": "air_temperature",
                              "GRIB_paramId": 167})},
                    coords={time_name: times, lat_name: lat, lon_name: lon},
                    attrs={"Conventions": "CF-1.7", "institution": "test", "history": "made by a test"})
    ds[lat_name].attrs.update(units="degrees_north")
    return ds


@pytest.mark.parametrize("names", [("time", "lat", "lon"), ("valid_time", "latitude", "longitude")])
@pytest.mark.parametrize("ascending", [False, True])
def test_netcdf_round_trip_keeps_coordinates_order_and_attributes(tmp_path, names, ascending):
    path = tmp_path / "in.nc"
    source = _dataset(*names, ascending=ascending)
    source.to_netcdf(path)
    field = open_field(path, "t2m")
    assert field.data.dims == ("time", "lat", "lon")
    np.testing.assert_array_equal(field.lat, source[names[1]].values)
    members = np.stack([field.values(), field.values() + 1])
    out = write_ensemble(tmp_path / "out.nc", members, field, field.times, "a test wrote this",
                         extra={"observed": np.isfinite(field.values())})
    back = xr.open_dataset(out)
    assert back["t2m"].dims == ("member", *names)
    for name in names:
        np.testing.assert_array_equal(back[name].values, source[name].values)
    np.testing.assert_array_equal(back["t2m"].values[1], source["t2m"].values + 1)
    for key in ("units", "long_name", "standard_name"):
        assert back["t2m"].attrs[key] == source["t2m"].attrs[key]
    assert back.attrs["Conventions"] == "CF-1.7" and back.attrs["institution"] == "test"
    assert back.attrs["history"].startswith("made by a test") and "a test wrote this" in back.attrs["history"]
    assert back[names[1]].attrs["units"] == "degrees_north"
    back.close()


def test_zarr_store_opens_lazily_with_chunks(tmp_path):
    store = tmp_path / "field.zarr"
    _dataset(n_times=8).to_zarr(store)
    field = open_field(store, "t2m", chunks={"time": 1, "lat": 3, "lon": 3})
    assert field.data.chunks is not None
    assert field.values(slice(2, 4)).shape == (2, 5, 7)
    np.testing.assert_array_equal(field.day_of_month(), np.ones(8))


def test_unknown_variable_and_missing_axes_are_clear_errors(tmp_path):
    path = tmp_path / "in.nc"
    _dataset().to_netcdf(path)
    with pytest.raises(ConfigError, match="no variable 'sst'.*t2m"):
        open_field(path, "sst")
    other = tmp_path / "other.nc"
    _dataset().rename({"lat": "y"}).to_netcdf(other)
    with pytest.raises(DataError, match="no lat axis"):
        open_field(other, "t2m")
    with pytest.raises(DataError, match="no such file"):
        open_field(tmp_path / "absent.nc", "t2m")


def test_the_era5_file_opens(shared_data):
    field = open_field(shared_data / "geo" / "era5_t2m_uk_2019-03.nc", "t2m")
    assert field.shape == (744, 33, 49)
    assert field.lat[0] > field.lat[-1]
    assert field.attrs["units"] == "K"
    assert (field.day_of_month() <= 24).sum() == 24 * 24
