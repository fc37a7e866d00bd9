"""Gap-filling, forecasting and generation helpers on tiny fields and tiny untrained models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from metamap.diffusion.objective import diffusion_loss
from metamap.diffusion.schedules import NoiseSchedule
from metamap.errors import CheckpointError, DataError
from metamap.geo.anomaly import FieldScaler, anomaly_standardizer, field_fraction
from metamap.geo.climatology import SeasonalClimatology
from metamap.geo.data import PatchSource, scan_training, static_channels
from metamap.geo.fill import FILL_COND_CHANNELS, conditional_fill, fill_batches, inpaint_fill
from metamap.geo.forecast import (
    MAX_LEAD,
    deterministic_forecast,
    forecast_batches,
    increment_scales,
    train_deterministic,
)
from metamap.geo.generate import GENERATE_COND_CHANNELS, autocorrelation, generate, power_spectrum, wasserstein1
from metamap.geo.io import open_field
from metamap.geo.kriging import Variogram, krige
from metamap.geo.models import build_network, wrap
from metamap.geo.transforms import ValueTransform
from metamap.preprocessing import Standardizer
from metamap.training.diffusion import TrainedDiffusion

H, W = 10, 13


def _field(tmp_path, n_times=24, land=True):
    rng = np.random.default_rng(0)
    values = (280 + rng.standard_normal((n_times, H, W))).astype(np.float32)
    if land:
        values[:, :3, :4] = np.nan  # undefined by nature, e.g. SST over land
    ds = xr.Dataset(
        {"sst": (("time", "lat", "lon"), values, {"units": "K"})},
        coords={
            "time": pd.date_range("2019-03-01", periods=n_times, freq="h"),
            "lat": np.linspace(55, 50, H),
            "lon": np.linspace(-5, 1, W),
        },
    )
    path = tmp_path / "sst.nc"
    ds.to_netcdf(path)
    return open_field(path, "sst"), values


def _model(cond_channels, meta=None, never_valid=None):
    torch.manual_seed(0)
    trained = TrainedDiffusion(build_network(cond_channels, base=8), NoiseSchedule.cosine(100), "v")
    return wrap(
        trained,
        meta or {},
        FieldScaler(
            ValueTransform(),
            SeasonalClimatology(np.zeros((1, H, W)), 0),
            Standardizer.from_state_dict(
                {**anomaly_standardizer("sst").get_params(), "mean": np.zeros((H, W)), "scale": 1.0}
            ),
        ),
        never_valid if never_valid is not None else np.zeros((H, W), bool),
    )


def test_scan_training_gives_the_climatology_and_the_never_valid_pixels(tmp_path):
    field, values = _field(tmp_path)
    scaler, never_valid = scan_training(field, np.arange(12), ValueTransform(), max_times=100)
    valid = ~np.isnan(values).all(axis=0)
    expected = values[:12][:, valid].mean(axis=0)
    assert scaler.climatology.harmonics == 0  # twelve hours cannot show a seasonal cycle: the mean
    np.testing.assert_allclose(scaler.background(np.zeros(1))[0][valid], expected, rtol=1e-6)
    assert scaler.std == pytest.approx(float((values[:12][:, valid] - expected).std()), rel=1e-5)
    np.testing.assert_array_equal(never_valid, np.isnan(values).all(axis=0))


def test_fill_batches_keep_nan_away_from_the_loss(tmp_path):
    field, _ = _field(tmp_path)
    scaler, _ = scan_training(field, np.arange(20), ValueTransform())
    source = PatchSource(field, scaler, np.arange(20), (8, 8), seed=1)
    batch = fill_batches(source, 4, Variogram(0.0, 1.0, 3.0, 1.0), seed=2)()
    assert batch["x0"].shape == (4, 1, 8, 8) and batch["cond"].shape == (4, FILL_COND_CHANNELS, 8, 8)
    assert torch.isfinite(batch["x0"]).all() and torch.isfinite(batch["cond"]).all()
    assert not batch["valid"].all()
    network = build_network(FILL_COND_CHANNELS, base=8)
    loss = diffusion_loss(
        network,
        NoiseSchedule.cosine(100),
        batch["x0"],
        cond=batch["cond"],
        valid=batch["valid"],
        prediction="v",
        generator=torch.Generator().manual_seed(0),
    )
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in network.parameters() if p.grad is not None)


def test_fills_keep_known_pixels_exactly_and_nature_nan(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.standard_normal((H, W)).astype(np.float32)
    never_valid = np.zeros((H, W), bool)
    never_valid[:2, :2] = True
    values[never_valid] = np.nan
    values[rng.random((H, W)) < 0.5] = np.nan
    known = np.isfinite(values)
    static = static_channels(np.linspace(55, 50, H), np.linspace(-5, 1, W), (50, 55), (-5, 1))
    fill_model = _model(FILL_COND_CHANNELS, {"variogram": Variogram(0.0, 1.0, 3.0, 1.0).to_json()})
    conditional = conditional_fill(fill_model, values, static, members=3, steps=3, never_valid=never_valid)
    inpainted = inpaint_fill(
        _model(GENERATE_COND_CHANNELS), values, static, members=3, steps=3, resample=2, never_valid=never_valid
    )
    for ensemble in (conditional, inpainted):
        assert ensemble.shape == (3, H, W)
        np.testing.assert_array_equal(ensemble[:, known], np.broadcast_to(values[known], (3, known.sum())))
        assert np.isnan(ensemble[:, never_valid]).all()
        assert np.isfinite(ensemble[:, ~known & ~never_valid]).all()
    again = conditional_fill(fill_model, values, static, members=3, steps=3, never_valid=never_valid)
    np.testing.assert_array_equal(again, conditional)
    with pytest.raises(DataError, match="no observed"):
        conditional_fill(fill_model, np.full((H, W), np.nan, np.float32), static)
    with pytest.raises(CheckpointError, match="variogram"):
        conditional_fill(_model(FILL_COND_CHANNELS), values, static, members=3, steps=3)


def test_forecast_batches_are_scaled_changes_and_models_forecast_every_lead(tmp_path):
    field, _ = _field(tmp_path, land=False)
    scaler, _ = scan_training(field, np.arange(24), ValueTransform())
    k = 2
    source = PatchSource(field, scaler, np.arange(24), (H, W), n_times=k + MAX_LEAD, seed=0)
    scales = increment_scales(source, k, n_batches=2, batch=4)
    assert len(scales) == MAX_LEAD and all(s > 0 for s in scales)
    batch = forecast_batches(source, 3, k, scales, seed=0)()
    lead_channel = batch["cond"][:, k, 0, 0] * MAX_LEAD
    history_last = batch["cond"][:, k - 1]
    assert ((lead_channel >= 1) & (lead_channel <= MAX_LEAD)).all()
    assert batch["x0"].shape == (3, 1, H, W) and torch.isfinite(history_last).all()
    network = train_deterministic(forecast_batches(source, 2, k, scales), k, steps=2, base=8)
    static = static_channels(field.lat, field.lon, (50, 55), (-5, 1))
    history = scaler.to_model(field.values(slice(0, k)), field_fraction(field)[:k])
    out = deterministic_forecast(network, history, static, [1, 6], scales)
    assert out.shape == (2, H, W) and np.isfinite(out).all()


def test_generation_statistics_against_known_answers():
    rng = np.random.default_rng(0)
    a = rng.standard_normal(5000)
    assert wasserstein1(a + 0.5, a) == pytest.approx(0.5)
    yy, xx = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    wave = np.cos(2 * np.pi * 4 * xx / 32)[None]
    k, power = power_spectrum(wave)
    assert k[np.argmax(power)] == pytest.approx(4 / 32)
    noise = rng.standard_normal((20, 32, 32))
    correlation = autocorrelation(noise, 3)
    assert correlation[0] == pytest.approx(1.0)
    assert np.abs(correlation[1:]).max() < 0.05
    smooth = np.cumsum(noise, axis=2)
    assert autocorrelation(smooth, 2)[1] > 0.4


def test_generated_fields_have_the_grid_shape_and_nature_nan():
    never_valid = np.zeros((H, W), bool)
    never_valid[0, 0] = True
    static = static_channels(np.linspace(55, 50, H), np.linspace(-5, 1, W), (50, 55), (-5, 1))
    fields = generate(_model(GENERATE_COND_CHANNELS), static, 2, steps=2, never_valid=never_valid)
    assert fields.shape == (2, H, W) and np.isnan(fields[:, 0, 0]).all() and np.isfinite(fields[:, 1:]).all()


def test_patches_stream_lazily_from_a_zarr_store(tmp_path):
    from metamap.geo.stream_demo import make_store, train_on_store

    store = tmp_path / "small.zarr"
    make_store(store, size=40, n_times=5, chunk=16)
    field = open_field(store, "t2m", chunks={"time": 1, "lat": 16, "lon": 16})
    assert field.data.chunks is not None
    scaler, _ = scan_training(field, np.arange(5), ValueTransform(), max_times=3)
    source = PatchSource(field, scaler, np.arange(5), (12, 12), n_times=2, seed=0)
    patches = source.sample(3)
    assert patches.values.shape == (3, 2, 12, 12)
    full = field.values()
    for values, (t, i, j) in zip(patches.values.numpy(), patches.origin.tolist()):
        window = (slice(i, i + 12), slice(j, j + 12))
        expected = scaler.to_model(full[t : t + 2, i : i + 12, j : j + 12], field_fraction(field)[t : t + 2], window)
        np.testing.assert_allclose(values, expected, rtol=1e-6)
    result = train_on_store(store, steps=2, patch=16, batch=2)
    assert result["steps"] == 2 and result["peak_rss_mb"] > 0


def test_kriging_keeps_observations_and_interpolates_a_smooth_field():
    rng = np.random.default_rng(4)
    yy, xx = np.meshgrid(np.arange(30), np.arange(40), indexing="ij")
    smooth = np.sin(yy / 6.0) + np.cos(xx / 8.0)
    observed = rng.random(smooth.shape) < 0.1
    variogram = Variogram.fit(smooth[None], aspect=1.0)
    estimate, std = krige(np.where(observed, smooth, np.nan), observed, variogram)
    np.testing.assert_allclose(estimate[observed], smooth[observed], rtol=1e-6)
    assert np.all(std[observed] == 0) and np.all(std[~observed] > 0)
    gap_error = np.sqrt(np.mean((estimate - smooth)[~observed] ** 2))
    assert gap_error < 0.25 * smooth[~observed].std()  # far better than the field mean
    ordinary = Variogram(nugget=0.0, sill=1.0, length=5.0, aspect=1.0)
    np.testing.assert_allclose(krige(np.full((5, 6), 2.0), np.eye(5, 6, dtype=bool), ordinary)[0], 2.0, rtol=1e-6)
    empty_estimate, empty_std = krige(np.zeros((4, 4)), np.zeros((4, 4), bool), ordinary)
    assert np.all(empty_estimate == 0) and np.allclose(empty_std, 1.0)


def test_kriging_with_every_observation_as_neighbour_is_the_full_ordinary_kriging_system():
    rng = np.random.default_rng(5)
    values = rng.standard_normal((6, 7))
    observed = rng.random((6, 7)) < 0.3
    variogram = Variogram(nugget=0.1, sill=2.0, length=3.0, aspect=1.5)
    estimate, std = krige(values, observed, variogram, neighbours=int(observed.sum()))
    rows, columns = np.indices(values.shape)
    points = np.stack([rows.ravel(), columns.ravel() * 1.5], axis=1).astype(float)
    known = points[observed.ravel()]
    n = len(known)
    system = np.ones((n + 1, n + 1))
    system[:n, :n] = variogram.covariance(np.linalg.norm(known[:, None] - known[None], axis=-1))
    system[n, n] = 0
    for pixel in np.flatnonzero(~observed.ravel())[:5]:
        right = np.append(variogram.covariance(np.linalg.norm(known - points[pixel], axis=1)), 1.0)
        solution = np.linalg.solve(system, right)
        i, j = np.unravel_index(pixel, values.shape)
        assert estimate[i, j] == pytest.approx(solution[:n] @ values[observed], rel=1e-5)
        assert std[i, j] ** 2 == pytest.approx(variogram.total - solution[:n] @ right[:n] - solution[n], rel=1e-4)


def test_the_variogram_is_fitted_from_fields_whose_covariance_is_known():
    rng = np.random.default_rng(6)
    rows, columns = np.indices((24, 24))
    points = np.stack([rows.ravel(), columns.ravel()], axis=1).astype(float)
    truth = Variogram(nugget=0.05, sill=1.0, length=4.0, aspect=1.0)
    cholesky = np.linalg.cholesky(truth.covariance(np.linalg.norm(points[:, None] - points[None], axis=-1)))
    fields = (cholesky @ rng.standard_normal((len(points), 40))).T.reshape(40, 24, 24)
    fitted = Variogram.fit(fields, aspect=1.0)
    assert fitted.total == pytest.approx(truth.total, rel=0.25)
    assert 2.0 < fitted.length < 8.0 and fitted.nugget < 0.2
    with pytest.raises(CheckpointError, match="no valid kriging variogram"):
        Variogram.from_json({"nugget": 0.1}, "run")


def test_the_neighbour_count_travels_with_the_variogram():
    rng = np.random.default_rng(7)
    values = rng.standard_normal((12, 12))
    observed = rng.random((12, 12)) < 0.4
    wide = Variogram(nugget=0.1, sill=1.0, length=3.0, aspect=1.0, neighbours=32)
    assert Variogram.from_json(wide.to_json(), "run") == wide and wide.to_json()["neighbours"] == 32
    older = {key: value for key, value in wide.to_json().items() if key != "neighbours"}
    assert Variogram.from_json(older, "run").neighbours == 16  # runs saved before the setting was kriged from 16
    np.testing.assert_array_equal(krige(values, observed, wide)[0], krige(values, observed, wide, neighbours=32)[0])
    assert not np.array_equal(krige(values, observed, wide)[0], krige(values, observed, wide, neighbours=16)[0])
    with pytest.raises(CheckpointError, match="invalid kriging variogram"):
        Variogram.from_json({**wide.to_json(), "neighbours": 0}, "run")


def test_a_pixel_inside_a_large_gap_is_kriged_from_every_side():
    from scipy.spatial import cKDTree

    from metamap.geo.kriging import octant_neighbours

    rows, columns = np.indices((21, 21))
    observed = (columns <= 3) | ((rows == 10) & (columns == 20))  # a dense edge on the left, one pixel on the right
    known = np.stack([rows[observed], columns[observed]], axis=1).astype(float)
    right = int(np.flatnonzero((known[:, 0] == 10) & (known[:, 1] == 20))[0])
    centre = np.array([[10.0, 10.0]])
    _, nearest = cKDTree(known).query(centre, k=16)
    assert right not in nearest[0]  # the 16 nearest all lie on the left edge
    distance, index = octant_neighbours(cKDTree(known), known, centre, 16)
    assert right in index[0] and index.shape == (1, 16) and len(set(index[0].tolist())) == 16
    np.testing.assert_allclose(distance[0], np.linalg.norm(known[index[0]] - centre, axis=1))
