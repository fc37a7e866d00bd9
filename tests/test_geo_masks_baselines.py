"""Missing-data masks and the interpolation / kriging baselines."""

from __future__ import annotations

import numpy as np
import pytest

from metamap.errors import ConfigError, DataError, ShapeError
from metamap.geo import baselines
from metamap.geo.masks import MASK_KINDS, make_mask, random_training_mask, read_mask


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_masks_hide_the_asked_fraction_and_repeat_from_a_seed(kind):
    first = make_mask(kind, (33, 49), 0.4, np.random.default_rng(3))
    again = make_mask(kind, (33, 49), 0.4, np.random.default_rng(3))
    assert first.dtype == bool and first.shape == (33, 49)
    assert (~first).sum() == round(0.4 * 33 * 49)
    np.testing.assert_array_equal(first, again)


def test_cloud_blobs_are_few_connected_regions():
    from scipy.ndimage import label

    mask = make_mask("blobs", (40, 60), 0.4, np.random.default_rng(0))
    _, n_regions = label(~mask)
    assert n_regions <= 6


def test_bad_mask_options_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown mask kind"):
        make_mask("fog", (8, 8), 0.5, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="between 0 and 1"):
        make_mask("blobs", (8, 8), 1.2, np.random.default_rng(0))
    assert random_training_mask((8, 8), np.random.default_rng(0)).shape == (8, 8)


def _smooth_field():
    lat, lon = np.linspace(58, 50, 17), np.linspace(-10, 2, 25)
    yy, xx = np.meshgrid(lat, lon, indexing="ij")
    return lat, lon, 280 + np.sin(yy / 2) + 0.5 * np.cos(xx / 3)


def test_interpolation_and_kriging_recover_a_smooth_field_and_keep_observations():
    lat, lon, field = _smooth_field()
    observed = make_mask("stations", field.shape, 0.7, np.random.default_rng(1))
    for method in ("linear", "cubic"):
        filled = baselines.interpolate(field, observed, lat, lon, method)
        np.testing.assert_allclose(filled[observed], field[observed], atol=1e-8)
        assert np.abs(filled - field).mean() < 0.05
    mean, variance = baselines.ordinary_kriging(field, observed, lat, lon, "spherical")
    assert np.abs(mean - field)[~observed].mean() < 0.1
    assert variance[~observed].mean() > variance[observed].mean()
    background = np.full(field.shape, 280.0)
    assert baselines.field_mean(field, observed, background).shape == field.shape


def test_baselines_need_observations_and_known_options():
    lat, lon, field = _smooth_field()
    with pytest.raises(DataError, match="at least 3 observed"):
        baselines.field_mean(field, np.zeros(field.shape, bool))
    with pytest.raises(ConfigError, match="variogram"):
        baselines.ordinary_kriging(field, np.ones(field.shape, bool), lat, lon, "linearish")


def test_read_mask_from_npy_and_netcdf_and_its_refusals(tmp_path):
    import xarray as xr

    values = np.array([[1.0, 0.0, np.nan], [2.0, 1.0, 0.0]])
    np.save(tmp_path / "m.npy", values)
    expected = np.array([[True, False, False], [True, True, False]])
    np.testing.assert_array_equal(read_mask(tmp_path / "m.npy", (2, 3)), expected)
    xr.Dataset({"observed": (("lat", "lon"), values)}).to_netcdf(tmp_path / "m.nc")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.nc", (2, 3)), expected)
    with pytest.raises(ShapeError, match=r"expected a mask of the grid's shape \[3, 2\], got \[2, 3\]"):
        read_mask(tmp_path / "m.npy", (3, 2))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object))  # would need unpickling
    with pytest.raises(DataError, match="without pickles"):
        read_mask(tmp_path / "objects.npy", (1,))
    xr.Dataset({"a": (("y", "x"), values), "b": (("y", "x"), values)}).to_netcdf(tmp_path / "two.nc")
    with pytest.raises(DataError, match="expected one 2-D variable"):
        read_mask(tmp_path / "two.nc", (2, 3))
