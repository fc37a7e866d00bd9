"""The masked Standardizer: known answers per axis/floor/ddof/mask choice, streaming, kinds, state, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from metamap.errors import CheckpointError, ConfigError, DataError, ShapeError
from metamap.preprocessing import Standardizer


def _grid() -> np.ndarray:
    """``[4, 2, 3]`` float64: time t, pixel p = 3 * row + column holds ``10 * p + t`` (anomalies -1.5 .. 1.5)."""
    t = np.arange(4.0)[:, None, None]
    p = np.arange(6.0).reshape(2, 3)[None]
    return 10 * p + t


def test_pooling_every_axis_gives_one_mean_and_one_spread():
    x = np.array([[8.0, 12.0], [8.0, 12.0]])
    st = Standardizer().fit(x)
    assert st.mean_.shape == st.scale_.shape == ()
    assert float(st.mean_) == 10.0 and float(st.scale_) == 2.0
    np.testing.assert_array_equal(st.transform(x), [[-1.0, 1.0], [-1.0, 1.0]])
    assert int(st.n_samples_seen_) == 4


def test_axis_zero_gives_column_statistics_and_ddof_one_the_sample_spread():
    x = np.array([[1.0, 10.0], [3.0, 10.0], [5.0, 40.0]])
    population = Standardizer(axis=0).fit(x)
    np.testing.assert_allclose(population.mean_, [3.0, 20.0])
    np.testing.assert_allclose(population.scale_, [np.sqrt(8 / 3), np.sqrt(600 / 3)])
    sample = Standardizer(axis=0, ddof=1).fit(x)
    np.testing.assert_allclose(sample.scale_, [2.0, np.sqrt(300.0)])


def test_mean_per_pixel_with_one_spread_of_the_anomalies():
    x = _grid()
    st = Standardizer(axis=0, scale_axis=None).fit(x)
    np.testing.assert_allclose(st.mean_, 10 * np.arange(6.0).reshape(2, 3) + 1.5)
    assert st.scale_.shape == () and float(st.scale_) == pytest.approx(np.sqrt(1.25))


def test_kept_inner_axes_stay_with_size_one():
    x = np.stack([np.full((2, 3), 1.0), np.full((2, 3), 3.0)], axis=1)  # [2, 2, 3]: axis 1 varies
    st = Standardizer(axis=1).fit(x)
    assert st.mean_.shape == (2, 1, 3)
    np.testing.assert_allclose(st.mean_, 2.0)
    np.testing.assert_allclose(st.transform(x)[:, 0], -1.0)


def test_masked_entries_are_ignored_whatever_they_hold():
    x = np.array([[1.0, 5.0], [3.0, np.nan], [1e9, 7.0]])
    mask = np.array([[True, True], [True, False], [False, True]])
    st = Standardizer(axis=0).fit(x, mask)
    np.testing.assert_allclose(st.mean_, [2.0, 6.0])
    np.testing.assert_allclose(st.scale_, [1.0, 1.0])
    np.testing.assert_array_equal(st.n_samples_seen_, [2, 2])
    flat = Standardizer().fit(x, mask)
    assert float(flat.mean_) == pytest.approx(4.0)


def test_a_never_valid_element_gets_mean_zero():
    x = np.array([[1.0, np.nan], [3.0, np.nan]])
    st = Standardizer(axis=0, scale_axis=None).fit(x, np.isfinite(x))
    np.testing.assert_array_equal(st.mean_, [2.0, 0.0])
    np.testing.assert_array_equal(st.n_samples_seen_, [2, 0])


def test_floor_raises_small_spreads_and_none_refuses_a_zero_spread():
    x = np.array([[1.0, 5.0], [1.0, 7.0]])
    np.testing.assert_array_equal(Standardizer(axis=0, floor=1.5).fit(x).scale_, [1.5, 1.5])
    with pytest.raises(DataError, match="training loads: the valid values do not vary"):
        Standardizer(axis=0, name="training loads").fit(x)


def test_partial_fit_equals_fit():
    rng = np.random.default_rng(0)
    x = rng.normal(280.0, 5.0, (12, 4, 5))
    mask = rng.random(x.shape) > 0.2
    whole = Standardizer(axis=0, scale_axis=None).fit(x, mask)
    streamed = Standardizer(axis=0, scale_axis=None)
    for t in range(0, 12, 3):
        streamed.partial_fit(x[t : t + 3], mask[t : t + 3])
    np.testing.assert_allclose(streamed.mean_, whole.mean_, rtol=1e-12)
    np.testing.assert_allclose(streamed.scale_, whole.scale_, rtol=1e-9)
    np.testing.assert_array_equal(streamed.n_samples_seen_, whole.n_samples_seen_)
    per_column = Standardizer(axis=0, ddof=1).fit(x[:, 0], mask[:, 0])
    rows = Standardizer(axis=0, ddof=1)
    for t in range(12):
        rows.partial_fit(x[t : t + 1, 0], mask[t : t + 1, 0])
    np.testing.assert_allclose(rows.scale_, per_column.scale_, rtol=1e-9)


def test_partial_fit_waits_for_variation_and_refuses_when_used_without_it():
    st = Standardizer(axis=0, scale_axis=None, name="t2m training fields")
    st.partial_fit(np.ones((1, 2, 2)))  # one time step: no anomaly yet
    with pytest.raises(DataError, match="t2m training fields: the valid values do not vary"):
        st.transform(np.ones((2, 2)))
    st.partial_fit(np.full((1, 2, 2), 3.0))
    np.testing.assert_allclose(st.transform(np.ones((2, 2))), -1.0)
    again = Standardizer(axis=0, scale_axis=None).partial_fit(np.ones((1, 2, 2)))
    again.fit(np.stack([np.ones((2, 2)), np.full((2, 2), 3.0)]))  # a full fit starts afresh
    np.testing.assert_allclose(again.transform(np.ones((2, 2))), -1.0)


def test_partial_fit_refuses_pieces_of_another_shape():
    st = Standardizer(axis=0).partial_fit(np.ones((2, 3)))
    with pytest.raises(ShapeError, match="earlier pieces"):
        st.partial_fit(np.ones((2, 4)))


def test_numpy_and_torch_agree_and_keep_their_kind_and_dtype():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, (50, 4)).astype(np.float32)
    st = Standardizer(axis=0).fit(x)
    as_tensor = st.transform(torch.from_numpy(x))
    as_array = st.transform(x)
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.dtype == torch.float32
    assert isinstance(as_array, np.ndarray) and as_array.dtype == np.float32
    np.testing.assert_array_equal(as_tensor.numpy(), as_array)
    fitted_on_tensor = Standardizer(axis=0).fit(torch.from_numpy(x))
    np.testing.assert_array_equal(fitted_on_tensor.mean_, st.mean_)


def test_inverse_transform_undoes_transform():
    rng = np.random.default_rng(2)
    x = rng.normal(-4.0, 9.0, (30, 3))
    st = Standardizer(axis=0, ddof=1).fit(x)
    np.testing.assert_allclose(st.inverse_transform(st.transform(x)), x, rtol=1e-12, atol=1e-12)
    t = torch.from_numpy(x)
    torch.testing.assert_close(st.inverse_transform(st.transform(t)), t)


def test_nan_stays_nan_in_transform():
    st = Standardizer().fit(np.array([1.0, 3.0]))
    out = st.transform(np.array([np.nan, 2.0]))
    assert np.isnan(out[0]) and out[1] == 0.0


def test_subset_standardizes_a_patch_like_the_whole():
    x = _grid()
    st = Standardizer(axis=0, scale_axis=None).fit(x)
    patch = st.subset(slice(0, 2), slice(1, 3))
    np.testing.assert_array_equal(patch.transform(x[:, 0:2, 1:3]), st.transform(x)[:, 0:2, 1:3])


def test_state_round_trips_through_json():
    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 1.0, (20, 3, 2))
    st = Standardizer(axis=0, scale_axis=(0, 1), floor=1e-3, ddof=1, name="fields").fit(x)
    back = Standardizer.from_state_dict(json.loads(json.dumps(st.state_dict())))
    assert back.get_params() == st.get_params()
    np.testing.assert_array_equal(back.mean_, st.mean_)
    np.testing.assert_array_equal(back.scale_, st.scale_)
    np.testing.assert_array_equal(back.transform(x), st.transform(x))


def test_a_state_missing_keys_or_with_a_zero_spread_is_refused():
    with pytest.raises(CheckpointError, match="missing scale"):
        Standardizer.from_state_dict(
            {"axis": None, "scale_axis": None, "floor": None, "ddof": 0, "name": "x", "mean": 0.0}
        )
    state = {**Standardizer().fit(np.array([1.0, 3.0])).state_dict(), "scale": 0.0}
    with pytest.raises(CheckpointError, match="spread > 0"):
        Standardizer.from_state_dict(state)


def test_use_before_fit_is_a_config_error():
    with pytest.raises(ConfigError, match="readings is not fitted"):
        Standardizer(name="readings").transform(np.ones(3))


def test_nan_marked_valid_is_a_data_error_naming_the_data():
    with pytest.raises(DataError, match="training dispatches: 1 NaN/inf value"):
        Standardizer(axis=0, name="training dispatches").fit(np.array([[1.0], [np.nan], [2.0]]))


def test_too_few_values_and_bad_masks_and_options_are_refused():
    with pytest.raises(DataError, match="1 valid value"):
        Standardizer().fit(np.array([1.0, 2.0]), np.array([True, False]))
    with pytest.raises(DataError, match="need at least 3"):
        Standardizer(axis=0, ddof=2).fit(np.ones((2, 2)))
    with pytest.raises(ShapeError, match="bool mask"):
        Standardizer().fit(np.ones(3), np.ones(3))
    with pytest.raises(ShapeError, match="do not exist"):
        Standardizer(axis=2).fit(np.ones((3, 2)))
    with pytest.raises(ConfigError, match="must pool every axis"):
        Standardizer(axis=(0, 1), scale_axis=0).fit(np.ones((3, 2)))
    with pytest.raises(ConfigError, match="floor"):
        Standardizer(floor=0.0)
