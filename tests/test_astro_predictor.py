"""Photo-z PDFs, OOD flag and saved runs: calibration on generated galaxies, round trips, refusals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from metamap.astro.catalogue import Catalogue
from metamap.astro.metrics import pit, pit_ks
from metamap.astro.pdf import GRID, LocalResiduals
from metamap.astro.predictor import fit_predictor, load_predictor, save_predictor
from metamap.errors import CheckpointError


def _galaxies(n: int, seed: int, colour_shift: float = 0.0) -> Catalogue:
    """Galaxies whose g-r and r-i grow with z; z_spec scatters by 0.02 (1 + z) about what the colours say."""
    rng = np.random.default_rng(seed)
    z_true = rng.uniform(0.02, 0.4, n)
    r = rng.uniform(15, 18, n)
    colours = np.column_stack([1.2 + z_true, 0.5 + 2 * z_true, 0.3 + z_true, 0.2 + 0.5 * z_true]) + colour_shift
    colours += 0.01 * rng.standard_normal(colours.shape)
    mags = np.column_stack(
        [r + colours[:, 0] + colours[:, 1], r + colours[:, 1], r, r - colours[:, 2], r - colours[:, 2] - colours[:, 3]]
    )
    z_spec = z_true + 0.02 * (1 + z_true) * rng.standard_normal(n)
    return Catalogue(
        mags, np.ones_like(mags, bool), redshift=z_spec, source="generated", columns={b: b for b in "ugriz"}
    )


@pytest.fixture(scope="module")
def predictor():
    return fit_predictor(_galaxies(1500, 0), "knn", {"n_neighbors": 15}, quick=True, seed=0, ood_fpr=0.02)


def test_pdf_is_calibrated_on_new_galaxies_and_flags_shifted_ones(predictor):
    test = _galaxies(1500, 1)
    pred = predictor.predict(test)
    assert pit_ks(pit(pred.quantiles, test.redshift)) < 0.06
    q16, q84 = pred.at((0.16, 0.84)).T
    assert 0.62 < np.mean((q16 <= test.redshift) & (test.redshift <= q84)) < 0.74
    assert np.all(np.diff(pred.quantiles, axis=1) >= 0)
    assert pred.ood_flag.mean() < 0.05
    assert predictor.predict(_galaxies(300, 2, colour_shift=-0.6)).ood_flag.mean() > 0.95
    width = (q84 - q16) / (1 + pred.z_phot)
    assert np.median(width) == pytest.approx(0.04, rel=0.25)  # +-1 sigma of the 0.02 (1 + z) scatter


def test_pdf_of_known_residuals_reads_their_quantiles():
    x = np.zeros((400, 2))
    residual = np.linspace(-0.1, 0.1, 400)
    pdf = LocalResiduals()
    pdf.adapt((x, residual), neighbours=400)
    quantiles = pdf.predict((np.zeros((1, 2)), np.array([1.0])))
    assert quantiles[0] == pytest.approx(1.0 + 2.0 * np.quantile(residual, GRID))


def test_saved_run_round_trips_and_refuses_tampering(predictor, tmp_path):
    save_predictor(predictor, tmp_path / "run")
    loaded = load_predictor(tmp_path / "run")
    test = _galaxies(200, 3)
    a, b = predictor.predict(test), loaded.predict(test)
    assert np.array_equal(a.z_phot, b.z_phot) and np.array_equal(a.quantiles, b.quantiles)
    assert np.array_equal(a.ood_flag, b.ood_flag) and loaded.ood_threshold == predictor.ood_threshold
    info_path = tmp_path / "run" / "photoz_model.json"
    info = json.loads(info_path.read_text())
    info["model"]["params"] = {"n_neighbors": 3}
    info_path.write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="does not reproduce the run's saved predictions"):
        load_predictor(tmp_path / "run")
    info_path.write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable photo-z run"):
        load_predictor(tmp_path / "run")
    with pytest.raises(CheckpointError, match="not a photo-z run"):
        load_predictor(tmp_path)


def test_quantile_table_has_the_named_columns(predictor):
    frame = predictor.predict(_galaxies(20, 4)).to_frame()
    assert list(frame.columns) == ["z_phot", "z_q05", "z_q16", "z_q50", "z_q84", "z_q95", "ood_score", "ood_flag"]
    assert isinstance(frame, pd.DataFrame) and (frame["z_q05"] <= frame["z_q95"]).all()
