"""Hostile and malformed input files: no reader runs code from a file, and every failure is one DataError line."""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metamap.astro.catalogue import read_table
from metamap.cli import main
from metamap.errors import DataError, MetamapError
from metamap.safe_hdf import read_frame
from metamap.tasks.omniglot import load_omniglot
from metamap.testing import crafted
from metamap.traffic.io import read_distance_csv, read_h5, read_locations, read_npz

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Each read of an HDF file that may be corrupt starts a checking child process (about a second).
FUZZ_ISOLATED = settings(FUZZ, max_examples=10)

HDF_CASES = {
    "pickled column name": crafted.hdf_pickled_column_name,
    "object block": crafted.hdf_object_block,
    "object index": crafted.hdf_object_index,
    "pickled index attribute": crafted.hdf_pickled_attribute,
    "pickled group attribute": lambda folder: crafted.hdf_pickled_attribute(folder, node="/df", name="extra"),
    "pickled root attribute": lambda folder: crafted.hdf_pickled_attribute(folder, node="/", name="extra"),
}


def _assert_one_line_refusal(exc_info, file: crafted.Crafted, *words: str) -> None:
    message = str(exc_info.value)
    assert not file.marker.exists(), "the payload ran"
    assert exc_info.type is DataError and "\n" not in message and str(file.path) in message
    for word in words:
        assert word in message


def _assert_cli_refusal(capsys, argv: list[str], file: crafted.Crafted) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert not file.marker.exists(), "the payload ran"
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("metamap: error: ") and "Traceback" not in err


# --------------------------------------------------------------------------- HDF


@pytest.mark.parametrize("case", HDF_CASES)
def test_hdf_payload_is_refused_by_the_reader(tmp_path, case):
    file = HDF_CASES[case](tmp_path)
    with pytest.raises(DataError) as exc_info:
        read_h5(file.path)
    _assert_one_line_refusal(exc_info, file, "/")


def test_hdf_payloads_would_run_under_pandas(tmp_path):
    """The crafted files are real threats: pandas' own reader runs each payload."""
    for build in HDF_CASES.values():
        file = build(tmp_path)
        try:
            pd.read_hdf(file.path, "df")
        except Exception:  # noqa: BLE001 - only whether the payload ran matters here
            pass
        assert file.marker.exists(), file.path.name
        file.marker.unlink()


def test_pickled_attribute_message_names_node_and_attribute(tmp_path):
    file = crafted.hdf_pickled_attribute(tmp_path)
    with pytest.raises(DataError, match=r"node /df/axis1 attribute 'freq' is a pickled Python object") as exc_info:
        read_frame(file.path)
    _assert_one_line_refusal(exc_info, file)


def test_object_column_names_are_refused_as_pickles(tmp_path):
    file = crafted.hdf_pickled_column_name(tmp_path)
    with pytest.raises(DataError, match=r"node /df/axis0.*VLArray.*pickles") as exc_info:
        read_frame(file.path)
    _assert_one_line_refusal(exc_info, file)


@pytest.mark.parametrize(
    ("case", "command"),
    [("pickled column name", "train"), ("object block", "train"), ("pickled index attribute", "evaluate")],
)
def test_hdf_payload_through_the_cli(tmp_path, capsys, case, command):
    file = HDF_CASES[case](tmp_path)
    _assert_cli_refusal(capsys, ["traffic", command, "--data", str(file.path), "--out", str(tmp_path / "run")], file)


@pytest.mark.slow
def test_pickled_column_name_in_a_subprocess(tmp_path):
    """The METR-LA layout with one pickled column name, as a user would run it."""
    file = crafted.hdf_pickled_column_name(tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "metamap",
            "traffic",
            "train",
            "--data",
            str(file.path),
            "--out",
            str(tmp_path / "r"),
            "--steps",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert not file.marker.exists(), "the payload ran"
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "VLArray" in result.stderr and not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- npz


def test_npz_object_array_is_refused(tmp_path, capsys):
    file = crafted.npz_object_array(tmp_path)
    with pytest.raises(DataError) as exc_info:
        read_npz(file.path)
    _assert_one_line_refusal(exc_info, file, "allow_pickle")
    _assert_cli_refusal(capsys, ["traffic", "train", "--data", str(file.path), "--out", str(tmp_path / "run")], file)


def test_omniglot_object_array_is_refused(tmp_path):
    images = crafted.npz_object_array(tmp_path, key="images")
    labels = np.zeros((1, 20), dtype=np.int64)
    with zipfile.ZipFile(images.path, "a") as archive:
        buffer = io.BytesIO()
        np.save(buffer, labels)
        archive.writestr("labels.npy", buffer.getvalue())
    images.path.rename(tmp_path / "images_background.npz")
    with pytest.raises(DataError, match="images") as exc_info:
        load_omniglot(tmp_path)
    assert not images.marker.exists() and "\n" not in str(exc_info.value)


# --------------------------------------------------------------------------- catalogues


def test_parquet_pickled_extension_is_not_unpickled(tmp_path, capsys):
    file = crafted.parquet_pickled_extension(tmp_path)
    frame = read_table(file.path)
    assert not file.marker.exists(), "the payload ran"
    assert list(frame.columns) == ["ra", "dec", "z"] and frame["z"].tolist() == [b"a", b"b"]
    _assert_cli_refusal(capsys, ["astro", "classify", "--data", str(file.path), "--out", str(tmp_path / "o")], file)


@pytest.mark.parametrize("how", ["yaml_tag", "mixin_class"])
def test_fits_yaml_object_is_refused(tmp_path, capsys, how):
    file = crafted.fits_yaml_object(tmp_path, how)
    with pytest.raises(DataError) as exc_info:
        read_table(file.path)
    _assert_one_line_refusal(exc_info, file)
    _assert_cli_refusal(capsys, ["astro", "photoz", "--data", str(file.path), "--out", str(tmp_path / "o")], file)


# --------------------------------------------------------------------------- fuzzing


def _valid_h5_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.h5"
        crafted.readings_frame().to_hdf(path, key="df")
        return path.read_bytes()


VALID_H5 = _valid_h5_bytes()


def _returns_or_refuses(read, *args) -> None:
    try:
        read(*args)
    except MetamapError as exc:
        assert "\n" not in str(exc)


@pytest.mark.slow
@FUZZ_ISOLATED
@given(data=st.binary(max_size=2048))
def test_fuzz_hdf_random_bytes(tmp_path, data):
    path = tmp_path / "random.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + data)
    _returns_or_refuses(read_h5, path)


@pytest.mark.slow
@FUZZ_ISOLATED
@given(edits=st.lists(st.tuples(st.integers(0, len(VALID_H5) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_fuzz_hdf_mutated_file(tmp_path, edits):
    data = bytearray(VALID_H5)
    for position, value in edits:
        data[position] = value
    path = tmp_path / "mutated.h5"
    path.write_bytes(bytes(data))
    _returns_or_refuses(read_h5, path)


ODD_VALUES = st.sampled_from([0.0, 1.0, -3.5, np.nan, np.inf, -np.inf, 1e300])


@FUZZ
@given(
    rows=st.integers(0, 6),
    columns=st.integers(0, 3),
    values=st.lists(ODD_VALUES, min_size=18, max_size=18),
    offsets=st.lists(st.integers(-2, 3), min_size=6, max_size=6),
    integer_ids=st.booleans(),
    table=st.booleans(),
)
def test_fuzz_hdf_odd_frames(tmp_path, monkeypatch, rows, columns, values, offsets, integer_ids, table):
    """Empty, one-row, NaN/inf, duplicate and unsorted timestamps: pandas' read and ours agree, or ours refuses.

    pandas itself writes these files, so they are read without the checking child process.
    """
    monkeypatch.setattr("metamap.safe_hdf._check_in_child", lambda image, key, path: None)
    times = pd.Timestamp("2020-01-01") + pd.to_timedelta(np.cumsum(offsets[:rows]) * 5, unit="min")
    ids = list(range(100, 100 + columns)) if integer_ids else [f"s{i}" for i in range(columns)]
    frame = pd.DataFrame(np.array(values[: rows * columns]).reshape(rows, columns), index=times, columns=ids)
    path = tmp_path / "odd.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas warns on an object index (it pickles it)
        frame.to_hdf(path, key="df", format="table" if table and rows else "fixed")
    try:
        ours = read_frame(path)
    except DataError as exc:  # pandas pickled an object index (an empty frame's columns): refused
        assert "VLArray" in str(exc) and "\n" not in str(exc)
    else:
        pd.testing.assert_frame_equal(ours, pd.read_hdf(path, "df"))
    _returns_or_refuses(read_h5, path)


@FUZZ
@given(data=st.binary(max_size=2048), prefix=st.sampled_from([b"", b"PK\x03\x04", b"\x93NUMPY"]))
def test_fuzz_npz_random_bytes(tmp_path, data, prefix):
    path = tmp_path / "random.npz"
    path.write_bytes(prefix + data)
    _returns_or_refuses(read_npz, path)


@FUZZ
@given(
    shape=st.lists(st.integers(0, 3), max_size=4),
    dtype=st.sampled_from(["float32", "float64", "int16", "bool", "complex64", "U3", "datetime64[s]"]),
    fill=ODD_VALUES,
)
def test_fuzz_npz_odd_arrays(tmp_path, shape, dtype, fill):
    path = tmp_path / "odd.npz"
    with np.errstate(invalid="ignore", over="ignore"):
        array = np.full(shape, fill).astype(dtype) if dtype[0] in "fibc" else np.zeros(shape, dtype=dtype)
    np.savez(path, data=array)
    _returns_or_refuses(read_npz, path)


def test_complex_npz_readings_are_refused_not_cast(tmp_path):
    path = tmp_path / "complex.npz"
    np.savez(path, data=np.full((4, 3, 1), 1 + 2j, dtype=np.complex64))
    with pytest.raises(DataError, match=r"expected real numeric readings in 'data', got dtype complex64"):
        read_npz(path)


CSV_TEXT = st.text(alphabet=st.sampled_from(list("0123456789,.-\n\"' abcefromtsinlaud")), max_size=300)


@FUZZ
@given(text=CSV_TEXT, raw=st.binary(max_size=200))
def test_fuzz_csv_readers(tmp_path, text, raw):
    for content in (("from,to,cost\n" + text).encode(), ("sensor_id,latitude,longitude\n" + text).encode(), raw):
        path = tmp_path / "fuzz.csv"
        path.write_bytes(content)
        _returns_or_refuses(read_distance_csv, path, 3)
        _returns_or_refuses(read_distance_csv, path, 2, ("a", "1"))
        _returns_or_refuses(read_locations, path, ("a", "1"))
        _returns_or_refuses(read_table, path)
