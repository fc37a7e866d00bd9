"""Column mapping (``--columns``) of astro catalogues: mapped names, and no guessing between a band and a redshift."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metamap.astro.catalogue import catalogue_from_frame, load_catalogue, parse_columns
from metamap.cli import main
from metamap.errors import ConfigError, DataError


def _frame(names: dict[str, str], n: int = 8) -> pd.DataFrame:
    """Columns named by ``names`` (field -> column): magnitudes 17-19, redshift 0-0.3, a class, a position."""
    rng = np.random.default_rng(0)
    values = {b: 17 + 2 * rng.random(n) for b in "ugriz"}
    values |= {"redshift": 0.3 * rng.random(n), "ra": 10 * rng.random(n), "dec": rng.random(n)}
    frame = pd.DataFrame({names.get(k, k): v for k, v in values.items()})
    frame[names.get("class", "class")] = "GALAXY"
    return frame


def test_mapping_reads_the_named_columns_from_parquet(tmp_path):
    names = {b: f"dered_{b}" for b in "ugriz"} | {"redshift": "z"}
    frame = _frame(names)
    frame["cModelMag_r"] = 30.0  # a second r-like column, not chosen because the mapping names dered_r
    path = tmp_path / "cat.parquet"
    frame.to_parquet(path)
    mapping = parse_columns(",".join(f"{k}={v}" for k, v in names.items()))
    cat = load_catalogue(path, mapping)
    assert cat.mags[:, 2] == pytest.approx(frame["dered_r"].to_numpy())
    assert cat.redshift == pytest.approx(frame["z"].to_numpy())
    assert cat.columns["z"] == "dered_z" and cat.columns["redshift"] == "z"


def test_other_survey_names_are_found_when_unique():
    cat = catalogue_from_frame(_frame({b: f"cModelMag_{b}" for b in "ugriz"} | {"redshift": "z_spec"}))
    assert cat.columns["u"] == "cModelMag_u" and cat.columns["redshift"] == "z_spec"
    assert np.isfinite(cat.redshift).all()


def test_bare_z_beside_other_band_names_is_an_error_naming_the_flag():
    frame = _frame({b: f"dered_{b}" for b in "ugri"} | {"redshift": "zz"}).rename(columns={"zz": "redshift"})
    frame = frame.drop(columns=["redshift"]).assign(z=0.1)  # dered_u..i and a bare z: band or redshift?
    with pytest.raises(DataError, match=r"'z' could be the z-band magnitude or the redshift.*--columns"):
        catalogue_from_frame(frame)


def test_redshift_read_as_the_z_band_is_refused():
    frame = _frame({}).drop(columns=["z"]).rename(columns={"redshift": "z"})  # u g r i and a redshift named z
    with pytest.raises(DataError, match=r"'z', read as the z-band magnitude, has median 0\.\d+.*--columns redshift=z"):
        catalogue_from_frame(frame)


def test_two_columns_fitting_one_field_are_an_error():
    frame = _frame({}).assign(dered_u=18.0)
    with pytest.raises(DataError, match=r"\['u', 'dered_u'\] could each be the u-band magnitude; pass --columns u="):
        catalogue_from_frame(frame)
    assert catalogue_from_frame(frame, columns={"u": "dered_u"}).mags[:, 0] == pytest.approx(18.0)
    with pytest.raises(DataError, match="could each be the redshift"):
        catalogue_from_frame(_frame({}).assign(z_spec=0.1))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("u", "expected entries like"),
        ("w=dered_w", "unknown field 'w'"),
        ("u=a,u=b", "given twice"),
        ("u=a,g=a", "given for two fields"),
    ],
)
def test_bad_mappings_are_config_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_columns(text)


def test_cli_unknown_column_is_one_line_exit_2(tmp_path, capsys):
    path = tmp_path / "cat.csv"
    _frame({}).to_csv(path, index=False)
    out = tmp_path / "out"
    assert main(["astro", "classify", "--data", str(path), "--out", str(out), "--columns", "u=dered_u"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("metamap: error:") and "--columns u=dered_u: no such column" in err[0]
    assert not out.exists()
