"""netCDF / zarr in and out: axis names, latitude order, CF attributes, round trip; missing values, unsafe
stores, the identity a run records."""

from __future__ import annotations

import json
import shutil

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from metamap.errors import ConfigError, DataError
from metamap.geo.io import check_same_field, mask_missing, open_field, write_ensemble


def _dataset(time_name="time", lat_name="lat", lon_name="lon", ascending=False, n_times=5):
    lat = np.linspace(50, 54, 5)
    lat = lat if ascending else lat[::-1]
    lon = np.linspace(-4, 2, 7)
    values = np.arange(n_times * 5 * 7, dtype=np.float32).reshape(n_times, 5, 7) + 270
    times = pd.date_range("2019-03-01", periods=n_times, freq="h")
    ds = xr.Dataset(
        {
            "t2m": (
                (time_name, lat_name, lon_name),
                values,
                {
                    "units": "K",
                    "long_name": "2 metre temperature",
                    "standard_name": "air_temperature",
                    "GRIB_paramId": 167,
                },
            )
        },
        coords={time_name: times, lat_name: lat, lon_name: lon},
        attrs={"Conventions": "CF-1.7", "institution": "test", "history": "made by a test"},
    )
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
    out = write_ensemble(
        tmp_path / "out.nc",
        members,
        field,
        field.times,
        "a test wrote this",
        extra={"observed": np.isfinite(field.values())},
    )
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


def test_undecoded_fill_and_missing_values_and_valid_range_are_masked():
    raw = np.array([[[-9999, -999, 7], [12, 400, 9.97e36]]], dtype=np.float32)
    declared = xr.DataArray(
        raw,
        dims=("time", "lat", "lon"),
        attrs={"_FillValue": -9999.0, "missing_value": [-999.0, -998.0], "valid_max": 300.0},
    )
    np.testing.assert_array_equal(np.isnan(mask_missing(declared).values), [[[True, True, False], [False, True, True]]])
    assert "_FillValue" not in mask_missing(declared).attrs
    undeclared = xr.DataArray(raw, dims=("time", "lat", "lon"))  # -9999 and -999 are values unless declared
    np.testing.assert_array_equal(mask_missing(undeclared).values[0, 0], [-9999, -999, 7])
    assert np.isnan(mask_missing(undeclared).values[0, 1, 2])
    packed = xr.DataArray(
        np.array([[[-32767, 5], [6, 7]]], np.int16),
        dims=("time", "lat", "lon"),
        attrs={"missing_value": np.int16(-32767)},
    )
    np.testing.assert_array_equal(np.isnan(mask_missing(packed).values), [[[True, False], [False, False]]])


def test_valid_range_of_packed_data_is_applied_in_the_unpacked_unit(tmp_path):
    path = tmp_path / "packed.nc"
    with netCDF4.Dataset(path, "w") as nc:
        for name, size in (("time", 1), ("lat", 2), ("lon", 2)):
            nc.createDimension(name, size)
            nc.createVariable(name, "f8", (name,))[:] = np.arange(size)
        variable = nc.createVariable("t2m", "i2", ("time", "lat", "lon"))
        variable.set_auto_maskandscale(False)
        variable.setncatts({"scale_factor": 0.5, "add_offset": 200.0, "valid_range": np.array([0, 400], np.int16)})
        variable[:] = np.array([[[-10, 0], [400, 401]]], np.int16)
    field = open_field(path, "t2m")
    np.testing.assert_array_equal(field.values()[0], [[np.nan, 200.0], [400.0, np.nan]])


def test_non_numeric_variables_and_coordinates_are_refused(tmp_path):
    ds = _dataset()
    ds["station"] = ("time", np.array(["a", "bb", "ccc", "d", "e"], dtype=object))
    ds["label"] = (("time", "lat", "lon"), np.full((5, 5, 7), "x", dtype=object))
    path = tmp_path / "strings.nc"
    ds.to_netcdf(path)
    assert open_field(path, "t2m").shape == (5, 5, 7)  # string variables beside the field do no harm
    with pytest.raises(DataError, match="label holds strings; expected numbers"):
        open_field(path, "label")
    with netCDF4.Dataset(path, "a") as nc:  # a ragged (vlen) variable reads as Python objects
        ragged = nc.createVariable("ragged", nc.createVLType(np.int32, "ints"), ("time", "lat", "lon"))
        ragged[0, 0, 0] = np.arange(3, dtype=np.int32)
    with pytest.raises(DataError, match="ragged holds variable-length"):
        open_field(path, "ragged")
    named = tmp_path / "named.nc"
    _dataset().assign_coords(lat=["a", "b", "c", "d", "e"]).to_netcdf(named)
    with pytest.raises(DataError, match="the lat coordinate holds <U1 values"):
        open_field(named, "t2m")


def _v2_array(store, name, dtype, filters=None, compressor=None):
    folder = store / name
    folder.mkdir(parents=True)
    (folder / ".zarray").write_text(
        json.dumps(
            {
                "zarr_format": 2,
                "shape": [5, 5, 7],
                "chunks": [5, 5, 7],
                "dtype": dtype,
                "filters": filters,
                "compressor": compressor,
                "fill_value": None,
                "order": "C",
            }
        )
    )
    (folder / ".zattrs").write_text(json.dumps({"_ARRAY_DIMENSIONS": ["time", "lat", "lon"]}))


def test_zarr_stores_that_could_hand_out_objects_are_refused_and_strings_are_read(tmp_path):
    store = tmp_path / "strings.zarr"
    ds = _dataset()
    ds["station"] = ("time", np.array(["a", "bb", "ccc", "d", "e"], dtype=object))
    ds.to_zarr(store, zarr_format=2, consolidated=False)
    assert open_field(store, "t2m").shape == (5, 5, 7)
    for codec in ({"id": "msgpack2"}, {"id": "json2"}, None):
        crafted = tmp_path / f"object-{codec and codec['id']}.zarr"
        shutil.copytree(store, crafted)
        _v2_array(crafted, "blob", "|O", filters=[codec] if codec else None)
        with pytest.raises(DataError, match="object-dtype array"):
            open_field(crafted, "t2m")
    v3 = tmp_path / "v3.zarr"
    _dataset().to_zarr(v3, zarr_format=3, consolidated=False)
    meta = json.loads((v3 / "t2m" / "zarr.json").read_text())
    meta["codecs"].insert(0, {"name": "numcodecs.pickle", "configuration": {"protocol": 5}})
    (v3 / "t2m" / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="pickle codec"):
        open_field(v3, "t2m")


def test_identity_and_the_tolerance_of_the_grid_comparison(tmp_path):
    path = tmp_path / "in.nc"
    source = _dataset(ascending=True)
    source.to_netcdf(path)
    field = open_field(path, "t2m")
    identity = field.identity()
    assert (identity["var"], identity["units"], identity["calendar"]) == ("t2m", "K", "standard")
    check_same_field(identity, field, "data", "run")
    nearly = {**identity, "lat": (np.asarray(identity["lat"]) + 1e-4).tolist()}  # float32 rounding, not a shift
    check_same_field(nearly, field, "data", "run")
    shifted = {**identity, "lat": (np.asarray(identity["lat"]) + 0.1).tolist()}
    with pytest.raises(DataError, match="has lat 50..54 .* trained on 50.1..54.1"):
        check_same_field(shifted, field, "data", "run")


def test_grid_mapping_and_time_bounds_are_kept_where_they_still_hold(tmp_path):
    import cftime

    times = [cftime.Datetime360Day(2095, 1, day, 12) for day in range(1, 6)]
    lower = [cftime.Datetime360Day(2095, 1, day) for day in range(1, 6)]
    upper = [cftime.Datetime360Day(2095, 1, day + 1) for day in range(1, 6)]
    source = _dataset(n_times=5).assign_coords(time=times)
    source["t2m"].attrs.update(grid_mapping="crs", cell_methods="time: minimum")
    source["crs"] = ((), np.int32(0), {"grid_mapping_name": "latitude_longitude", "semi_major_axis": 6371000.0})
    source["time_bnds"] = (("time", "bnds"), np.stack([lower, upper], axis=1))
    source["time"].attrs["bounds"] = "time_bnds"
    source["time"].encoding.update(units="days since 2095-01-01", calendar="360_day")
    source["time_bnds"].encoding.update(units="days since 2095-01-01", calendar="360_day")
    path = tmp_path / "cf.nc"
    source.to_netcdf(path)
    field = open_field(path, "t2m")
    members = np.stack([field.values(), field.values()])

    subset = write_ensemble(tmp_path / "subset.nc", members[:, [1, 3]], field, field.times[[1, 3]], "kept")
    with xr.open_dataset(subset, decode_times=False) as back:
        assert back["t2m"].attrs["grid_mapping"] == "crs" and back["t2m"].attrs["cell_methods"] == "time: minimum"
        assert back["crs"].attrs["grid_mapping_name"] == "latitude_longitude"
        assert back["time"].attrs["bounds"] == "time_bnds" and back["time"].attrs["calendar"] == "360_day"
        assert back["time_bnds"].dims == ("time", "bnds")
        np.testing.assert_allclose(back["time_bnds"].values, [[1, 2], [3, 4]])  # days 2 and 4, in time's units
        np.testing.assert_allclose(back["time"].values, [1.5, 3.5])

    later = np.asarray([cftime.Datetime360Day(2095, 2, 1, 12)])  # a forecast valid time: no bounds known
    new = write_ensemble(tmp_path / "new.nc", members[:, :1], field, later, "new time")
    with xr.open_dataset(new) as back:
        assert "time_bnds" not in back.variables and "bounds" not in back["time"].attrs
        assert back["t2m"].attrs["grid_mapping"] == "crs" and "crs" in back.variables
