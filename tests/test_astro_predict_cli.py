"""``metamap astro photoz --save`` then ``metamap astro predict`` end to end, and the refusals of predict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metamap.cli import main

DERED = {b: f"dered_{b}" for b in "ugriz"}


def _objects(n: int, seed: int, kind: str) -> pd.DataFrame:
    """Galaxies (g-r grows with z) or QSOs (bluer, z ~ 1.5), with dered_* magnitude columns and z_spec."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.02, 0.4, n) if kind == "GALAXY" else rng.uniform(1.0, 2.0, n)
    shift = 0.0 if kind == "GALAXY" else -0.8
    colours = (
        np.column_stack([1.2 + z, 0.5 + 2 * z, 0.3 + z, 0.2 + 0.5 * z])
        if kind == "GALAXY"
        else (np.full((n, 4), 0.3) + shift)
    )
    colours = colours + 0.02 * rng.standard_normal((n, 4))
    r = rng.uniform(15, 18, n)
    mags = np.column_stack(
        [r + colours[:, 0] + colours[:, 1], r + colours[:, 1], r, r - colours[:, 2], r - colours[:, 2] - colours[:, 3]]
    )
    frame = pd.DataFrame({DERED[b]: mags[:, i] for i, b in enumerate("ugriz")})
    return frame.assign(z_spec=z + 0.02 * (1 + z) * rng.standard_normal(n), objtype=kind, objid=np.arange(n))


def _columns() -> str:
    return ",".join(f"{b}={c}" for b, c in DERED.items()) + ",redshift=z_spec,class=objtype"


@pytest.mark.slow
def test_photoz_save_then_predict(tmp_path, capsys):
    train = tmp_path / "train.csv"
    pd.concat([_objects(300, 0, "GALAXY"), _objects(60, 1, "QSO")]).to_csv(train, index=False)
    run, out = tmp_path / "run", tmp_path / "metrics"
    args = ["astro", "photoz", "--data", str(train), "--columns", _columns(), "--out", str(out)]
    assert main([*args, "--save", str(run), "--quick", "--no-fewshot"]) == 0
    assert (run / "photoz_model.json").is_file() and (run / "photoz_model.safetensors").is_file()
    assert "saved the model" in capsys.readouterr().out
    assert main([*args, "--save", str(run), "--quick", "--no-fewshot"]) == 2  # a run is there already
    assert "already holds files" in capsys.readouterr().err

    new = tmp_path / "new.parquet"
    galaxies, qsos = _objects(200, 2, "GALAXY"), _objects(50, 3, "QSO")
    pd.concat([galaxies, qsos]).drop(columns=["z_spec"]).to_parquet(new)
    predicted = tmp_path / "new_z.parquet"
    assert main(["astro", "predict", "--run", str(run), "--data", str(new), "--out", str(predicted)]) == 0
    table = pd.read_parquet(predicted)
    assert len(table) == 250 and list(table["objid"][:3]) == [0, 1, 2]
    assert (table["z_q05"] <= table["z_q16"]).all() and (table["z_q84"] <= table["z_q95"]).all()
    is_qso = (table["objtype"] == "QSO").to_numpy()
    assert table["ood_flag"][is_qso].mean() > 0.9 and table["ood_flag"][~is_qso].mean() < 0.1
    dz = (table["z_phot"][~is_qso].to_numpy() - galaxies["z_spec"].to_numpy()) / (1 + galaxies["z_spec"].to_numpy())
    assert np.median(np.abs(dz)) < 0.03
    as_csv = tmp_path / "new_z.csv"
    assert main(["astro", "predict", "--run", str(run), "--data", str(new), "--out", str(as_csv)]) == 0
    assert np.allclose(pd.read_csv(as_csv)["z_phot"], table["z_phot"])

    # Bands under other names than at training: refused unless mapped on purpose.
    other = tmp_path / "other.csv"
    galaxies.rename(columns={c: f"cModelMag_{b}" for b, c in DERED.items()}).to_csv(other, index=False)
    capsys.readouterr()
    assert main(["astro", "predict", "--run", str(run), "--data", str(other), "--out", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "the run was trained on the bands u=dered_u" in err[0] and "--columns u=cModelMag_u" in err[0]
    )
    mapped = ",".join(f"{b}=cModelMag_{b}" for b in "ugriz")
    assert (
        main(
            [
                "astro",
                "predict",
                "--run",
                str(run),
                "--data",
                str(other),
                "--columns",
                mapped,
                "--out",
                str(tmp_path / "o.csv"),
            ]
        )
        == 0
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--out", "x.txt"], "expected a .parquet or .csv file name"),
        (["--out", "x.csv", "--ood-fpr", "1.5"], "--ood-fpr: expected a rate in (0, 1)"),
        (["--out", "x.csv"], "not a photo-z run"),
    ],
)
def test_predict_refusals_are_one_line(tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "cat.csv"
    _objects(5, 0, "GALAXY").to_csv(data, index=False)
    assert main(["astro", "predict", "--run", str(tmp_path), "--data", str(data), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("metamap: error:") and message in err[0]
    assert not (tmp_path / "x.csv").exists()
