"""Catalogue loader: real SDSS file, sentinels and NaN as masks, clear errors; masked bands never matter."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from metamap.astro.catalogue import catalogue_from_frame, load_catalogue
from metamap.astro.features import drop_bands, fit_scaler, raw_features, standardized_features
from metamap.astro.tasks import GroupedRegression, magnitude_bins, sky_cells, split_groups
from metamap.errors import ConfigError, DataError
from metamap.learners import make_learner
from metamap.nn import MLP
from metamap.tasks.episode import Episode
from metamap.tasks.family import make_generator


def _frame(n: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    data = {b: 18 + rng.random(n) for b in "ugriz"}
    return pd.DataFrame(
        {
            "ra": rng.random(n) * 10,
            "dec": rng.random(n),
            **data,
            "class": ["GALAXY"] * n,
            "redshift": rng.random(n) * 0.2,
        }
    )


def test_real_sdss_file(shared_data):
    cat = load_catalogue(shared_data / "astro" / "sdss_dr14_10k.csv")
    assert len(cat) == 10_000
    assert cat.valid.all() and cat.mag_err is None
    assert int((cat.label == "GALAXY").sum()) == 4998
    assert int((cat.label == "QSO").sum()) == 850
    assert np.isfinite(cat.redshift).all() and cat.ra.shape == (10_000,)


def test_sentinels_and_nan_become_masks(tmp_path):
    frame = _frame()
    frame.loc[0, "u"] = -9999.0
    frame.loc[1, "z"] = 99.0
    frame.loc[2, "g"] = np.nan
    frame["err_u"], frame["err_g"], frame["err_r"], frame["err_i"], frame["err_z"] = 0.05, 0.02, 0.02, 0.03, 0.1
    path = tmp_path / "cat.parquet"
    frame.to_parquet(path)
    cat = load_catalogue(path)
    assert not cat.valid[0, 0] and not cat.valid[1, 4] and not cat.valid[2, 1]
    assert cat.valid.sum() == cat.valid.size - 3
    assert np.isnan(cat.mags[0, 0]) and np.isnan(cat.mag_err[0, 0]) and cat.mag_err[3, 4] == pytest.approx(0.1)


def test_fits_table_through_astropy(tmp_path):
    from astropy.table import Table

    frame = _frame().rename(columns={b: f"modelMag_{b}" for b in "ugriz"})
    path = tmp_path / "cat.fits"
    Table.from_pandas(frame.drop(columns=["class"])).write(path)
    cat = load_catalogue(path)
    assert cat.mags[:, 2] == pytest.approx(frame["modelMag_r"].to_numpy())
    assert cat.label is None


def test_missing_columns_and_all_missing_rows_raise(tmp_path):
    with pytest.raises(DataError, match=r"band\(s\) \['i'\]"):
        catalogue_from_frame(_frame().drop(columns=["i"]))
    frame = _frame()
    frame.loc[3, list("ugriz")] = [np.nan, 99.0, -9999.0, np.nan, 99.99]
    with pytest.raises(DataError, match=r"1 row\(s\) have no valid magnitude.*\[3\]"):
        catalogue_from_frame(frame)
    with pytest.raises(DataError, match="lacks \\['redshift'\\]"):
        catalogue_from_frame(_frame().drop(columns=["redshift"])).need("redshift")
    with pytest.raises(DataError, match="not found"):
        load_catalogue(tmp_path / "absent.csv")


def test_masked_band_values_never_reach_features_prediction_or_loss():
    rng = np.random.default_rng(1)
    mags = 18 + rng.random((40, 5))
    valid = drop_bands(np.ones((40, 5), bool), 0.3, rng)
    scaler = fit_scaler(mags, valid)
    other = np.where(valid, mags, rng.normal(0, 1e3, mags.shape))  # garbage in the masked bands
    x1, x2 = standardized_features(scaler, mags, valid), standardized_features(scaler, other, valid)
    assert np.array_equal(x1, x2)
    torch.manual_seed(0)
    learner = make_learner("maml", MLP(14, [8], 1), inner_steps=2, inner_lr=0.1)
    y = torch.as_tensor(rng.random((2, 20, 1)), dtype=torch.float32)
    losses = []
    for x in (x1, x2):
        t = torch.as_tensor(x).reshape(2, 20, 14)
        losses.append(float(learner.meta_loss(Episode(t[:, :10], y[:, :10], t[:, 10:], y[:, 10:])).detach()))
    assert losses[0] == losses[1]


def test_masked_query_values_are_excluded_from_the_loss():
    torch.manual_seed(0)
    learner = make_learner("maml", MLP(3, [8], 1), inner_steps=1, inner_lr=0.1)
    x = torch.randn(1, 6, 3)
    y = torch.randn(1, 6, 1)
    mask = torch.tensor([[True, True, False]])
    base = Episode(x[:, :3], y[:, :3], x[:, 3:], y[:, 3:], query_mask=mask)
    y_changed = y.clone()
    y_changed[0, 5] = 1e4  # the masked query
    changed = Episode(x[:, :3], y[:, :3], x[:, 3:], y_changed[:, 3:], query_mask=mask)
    assert float(learner.meta_loss(base).detach()) == pytest.approx(float(learner.meta_loss(changed).detach()))


def test_features_and_drop_bands():
    mags = np.array([[20.0, 19.0, 18.5, 18.0, 17.0]])
    valid = np.array([[True, True, False, True, True]])
    features, ok = raw_features(mags, valid)
    assert features[0, 5:9] == pytest.approx([1.0, 0.0, 0.0, 1.0])  # u-g, g-r (missing), r-i (missing), i-z
    assert ok[0, 5:9].tolist() == [True, False, False, True]
    assert features[0, 9:].tolist() == [0, 0, 1, 0, 0]
    dropped = drop_bands(np.ones((2000, 5), bool), 0.5, np.random.default_rng(0))
    assert dropped.any(1).all() and 0.45 < 1 - dropped.mean() < 0.55


def test_grouped_tasks_are_disjoint_reproducible_and_padded():
    ra = np.repeat([5.0, 15.0, 25.0, 35.0, 45.0], [12, 15, 20, 9, 30])
    cells = sky_cells(ra, np.zeros_like(ra), 10.0)
    groups = split_groups(cells, 10, (0.5, 0.25, 0.25), seed=0)
    assert sum(len(g) for name in ("train", "val", "test") for g in groups[name]) == 77
    assert groups["rest"][0].size == 9
    x = torch.arange(86, dtype=torch.float32)[:, None]
    family = GroupedRegression(x, x.clone(), groups, k_shot=4, n_query=None, split_name="test")
    ep1, ep2 = family.sample(5, make_generator(3)), family.sample(5, make_generator(3))
    assert torch.equal(ep1.x_support, ep2.x_support)
    for t in range(5):
        members = set(family.members[int(ep1.meta["group"][t])].tolist())
        support = set(ep1.x_support[t, :, 0].long().tolist())
        query = set(ep1.x_query[t][ep1.query_mask[t]][:, 0].long().tolist())
        assert support | query == members and not support & query
    with pytest.raises(ConfigError, match="k_shot"):
        GroupedRegression(x, x, groups, k_shot=12)


def test_magnitude_bins_are_equally_populated():
    mag = np.concatenate([np.linspace(15, 20, 100), [-9999.0]])
    valid = mag > -90
    bins = magnitude_bins(mag, valid, 4)
    assert bins[-1] == -1
    assert np.bincount(bins[:-1]).tolist() == [25, 25, 25, 25]
    assert (np.diff(bins[:-1]) >= 0).all()
    with pytest.raises(ConfigError, match="n_bins"):
        magnitude_bins(mag, valid, 1)
