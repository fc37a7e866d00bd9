"""``metamap geo`` never gives a wrong answer silently: data that are not what a run was trained on, output
paths that would overwrite the input or cannot be written, missing-value sentinels, crafted zarr stores.

Every refusal is checked as a user meets it: exit code 2, one stderr line, no traceback, input files
untouched. The files are tiny generated netCDF files and zarr stores (builders below).
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr

from metamap.cli import main
from metamap.geo.baselines import ordinary_kriging

T, H, W = 12, 6, 8
LAT = np.linspace(50.0, 55.0, H)  # 1 degree cells
LON = np.linspace(-7.0, 0.0, W)
TIME_UNITS = "hours since 2019-03-01 00:00:00"
GAPS = (slice(2, 4), slice(3, 6))  # pixels of the last field that the files mark missing


def reference_values(seed: int = 0) -> np.ndarray:
    """A daily-temperature-like field ``[T, H, W]`` in K."""
    rng = np.random.default_rng(seed)
    return (285 + np.cumsum(rng.standard_normal((T, H, W)), axis=0) * 0.3).astype(np.float32)


def write_field(
    path: Path,
    raw: np.ndarray | None = None,
    *,
    var: str = "tasmax",
    units: str = "K",
    lat: np.ndarray = LAT,
    lon: np.ndarray = LON,
    calendar: str = "standard",
    dtype: str = "f4",
    fill_value: float | None = None,
    attrs: dict | None = None,
) -> Path:
    """A netCDF file holding ``raw [T, H, W]`` exactly as given (no packing or masking on write), with
    ``_FillValue`` ``fill_value`` and further variable attributes ``attrs`` (``missing_value``,
    ``scale_factor``, ``valid_min``, ...), hourly times in ``calendar``."""
    raw = reference_values() if raw is None else raw
    with netCDF4.Dataset(path, "w") as nc:
        for name, values in (("time", np.arange(T, dtype=np.float64)), ("lat", lat), ("lon", lon)):
            nc.createDimension(name, len(values))
            nc.createVariable(name, "f8", (name,))[:] = values
        nc["time"].setncatts({"units": TIME_UNITS, "calendar": calendar})
        variable = nc.createVariable(var, dtype, ("time", "lat", "lon"), fill_value=fill_value)
        variable.set_auto_maskandscale(False)
        variable.setncatts({"units": units, **(attrs or {})})
        variable[:] = raw
    return path


class WritesMarker:
    """Unpickling this creates ``path``: a stand-in for code run by a crafted file."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def write_pickle_zarr(store: Path, marker: Path, codec_place: str = "filters", consolidated: bool = False) -> Path:
    """A zarr v2 store whose variable ``tasmax`` decodes through numcodecs' Pickle codec, with a chunk that
    creates ``marker`` when unpickled. ``codec_place``: ``filters`` (the object codec of an ``|O`` array) or
    ``compressor`` (on a float array); ``consolidated`` also lists it in ``.zmetadata``."""
    coords = xr.Dataset(coords={"time": np.arange(T, dtype=np.float64), "lat": LAT, "lon": LON})
    coords.to_zarr(store, zarr_format=2, consolidated=False)
    array = {
        "zarr_format": 2,
        "shape": [T, H, W],
        "chunks": [T, H, W],
        "fill_value": None,
        "order": "C",
        "dimension_separator": ".",
        "dtype": "|O" if codec_place == "filters" else "<f4",
        "compressor": None,
        "filters": None,
    }
    array[codec_place] = [{"id": "pickle", "protocol": 5}] if codec_place == "filters" else {"id": "pickle"}
    attrs = {"_ARRAY_DIMENSIONS": ["time", "lat", "lon"], "units": "K"}
    folder = store / "tasmax"
    folder.mkdir()
    (folder / ".zarray").write_text(json.dumps(array))
    (folder / ".zattrs").write_text(json.dumps(attrs))
    (folder / "0.0.0").write_bytes(pickle.dumps(WritesMarker(marker)))
    if consolidated:
        listing = {
            "zarr_consolidated_format": 1,
            "metadata": {".zgroup": {"zarr_format": 2}, "tasmax/.zarray": array, "tasmax/.zattrs": attrs},
        }
        (store / ".zmetadata").write_text(json.dumps(listing))
    return store


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file's bytes under ``path`` (or of the file ``path``)."""
    path = Path(path)
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def refused(argv: list[str], capsys, *untouched: Path) -> str:
    """Run the CLI; assert exit 2, one stderr line, no traceback, ``untouched`` unchanged; the line."""
    before = [snapshot(p) for p in untouched]
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert [snapshot(p) for p in untouched] == before
    return lines[0]


def sample_flags(run: Path, data: Path, out: Path, var: str = "tasmax") -> list:
    return ["--run", run, "--data", data, "--var", var, "--out", out, "--members", "2", "--steps", "2"]


def train_flags(data: Path, out: Path, task: str = "fill", var: str = "tasmax") -> list:
    return [
        "geo",
        "train",
        "--data",
        data,
        "--var",
        var,
        "--task",
        task,
        "--out",
        out,
        "--steps",
        "2",
        "--batch",
        "2",
        "--patch",
        "4",
        "--base",
        "8",
        "--k",
        "1",
        "--no-progress",
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tasmax file and a fill and a forecast run trained on it (two steps each): ``(data, runs)``."""
    folder = tmp_path_factory.mktemp("geo_safety")
    data = write_field(folder / "tasmax.nc")
    runs = {}
    for task in ("fill", "forecast"):
        runs[task] = folder / f"{task}_run"
        assert main([str(a) for a in train_flags(data, runs[task], task)]) == 0
    return data, runs


def _other_data(kind: str, path: Path) -> tuple[Path, str, str]:
    """Data that a run trained on ``tasmax.nc`` must refuse: ``(file, --var, expected message pattern)``."""
    values = reference_values(1)
    cases = {
        "flipped latitude": (dict(raw=values[:, ::-1], lat=LAT[::-1]), "tasmax", r"reverse order"),
        "another region": (dict(lat=LAT + 10), "tasmax", r"has lat 60\.\.65 \(6 values\) but .* trained on 50\.\.55"),
        "shifted grid": (dict(lon=LON + 0.5), "tasmax", r"has lon -6\.5\.\.0\.5 .* off by up to 0\.5 degrees"),
        "another variable": (
            dict(var="pr", units="mm s-1"),
            "pr",
            r"^metamap: error: --data .* holds variable 'pr' \[mm s-1\] but the run .* was trained "
            r"on 'tasmax' \[K\]$",
        ),
        "other units": (dict(units="degC"), "tasmax", r"'tasmax' \[degC\] but .* on 'tasmax' \[K\]"),
        "another calendar": (dict(calendar="noleap"), "tasmax", r"has the 'noleap' calendar but .* 'standard'"),
        "another grid size": (dict(raw=values[:, :-1], lat=LAT[:-1]), "tasmax", r"5 x 8 grid but .* 6 x 8"),
    }
    options, var, pattern = cases[kind]
    return write_field(path, **options), var, pattern


KINDS = [
    "flipped latitude",
    "another region",
    "shifted grid",
    "another variable",
    "other units",
    "another calendar",
    "another grid size",
]


@pytest.mark.parametrize("kind", KINDS)
def test_fill_refuses_data_unlike_the_training_data(trained, tmp_path, capsys, kind):
    data, runs = trained
    other, var, pattern = _other_data(kind, tmp_path / "other.nc")
    out = tmp_path / "filled.nc"
    line = refused(["geo", "fill", *sample_flags(runs["fill"], other, out, var)], capsys, other, runs["fill"])
    assert re.search(pattern, line), line
    assert not out.exists()


@pytest.mark.parametrize("kind", ["flipped latitude", "another variable"])
def test_forecast_refuses_data_unlike_the_training_data(trained, tmp_path, capsys, kind):
    data, runs = trained
    other, var, pattern = _other_data(kind, tmp_path / "other.nc")
    out = tmp_path / "forecast.nc"
    line = refused(
        ["geo", "forecast", *sample_flags(runs["forecast"], other, out, var), "--leads", "1"],
        capsys,
        other,
        runs["forecast"],
    )
    assert re.search(pattern, line), line
    assert not out.exists()


def test_the_same_grid_with_0_360_longitudes_is_accepted(trained, tmp_path):
    data, runs = trained
    values = reference_values(1)
    values[-1][GAPS] = np.nan
    other = write_field(tmp_path / "east.nc", values, lon=LON % 360)
    out = tmp_path / "filled.nc"
    assert main([str(a) for a in ["geo", "fill", *sample_flags(runs["fill"], other, out), "--times", "-1"]]) == 0
    with xr.open_dataset(out) as filled:
        known = np.isfinite(values[-1])
        np.testing.assert_array_equal(
            filled["tasmax"].values[:, 0][:, known], np.broadcast_to(values[-1][known], (2, known.sum()))
        )


def test_the_run_records_what_it_was_trained_on(trained):
    data, runs = trained
    meta = json.loads((runs["fill"] / "geo.json").read_text())
    assert (meta["var"], meta["units"], meta["calendar"]) == ("tasmax", "K", "standard")
    np.testing.assert_allclose(meta["lat"], LAT)
    np.testing.assert_allclose(meta["lon"], LON)
    assert meta["transform"]["climatology"] == "climatology.npy" and meta["transform"]["std"] == meta["std"] > 0


def test_a_run_without_recorded_coordinates_is_refused(trained, tmp_path, capsys):
    data, runs = trained
    old = shutil.copytree(runs["fill"], tmp_path / "old_run")
    meta = json.loads((old / "geo.json").read_text())
    for key in ("lat", "lon", "calendar"):
        del meta[key]
    (old / "geo.json").write_text(json.dumps(meta))
    line = refused(["geo", "fill", *sample_flags(old, data, tmp_path / "filled.nc")], capsys, data, old)
    assert "does not record the calendar, lat, lon of its training data" in line


def test_out_equal_to_data_is_refused(trained, capsys):
    data, runs = trained
    line = refused(["geo", "fill", *sample_flags(runs["fill"], data, data)], capsys, data, runs["fill"])
    assert "is the input file" in line


def _existing_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("not a folder\n")
    return path


OUT_FILES = {
    "an existing folder": lambda tmp_path: tmp_path,
    "a path under a file": lambda tmp_path: _existing_file(tmp_path) / "filled.nc",
    "/dev/null": lambda tmp_path: Path("/dev/null"),
    "an unwritable folder": lambda tmp_path: Path("/proc/self/filled.nc"),
}


@pytest.mark.parametrize("kind", list(OUT_FILES))
@pytest.mark.parametrize("command", ["fill", "forecast", "sample"])
def test_unusable_out_files_are_refused_before_any_work(trained, tmp_path, capsys, kind, command):
    data, runs = trained
    out = OUT_FILES[kind](tmp_path)
    missing_run = tmp_path / "no_such_run"  # checked after --out: the error names --out, not the run
    line = refused(["geo", command, *sample_flags(missing_run, data, out)], capsys, data)
    assert line.startswith(f"metamap: error: --out {out}"), line


@pytest.mark.parametrize("kind", ["a file", "a path under a file", "an unwritable folder"])
def test_unusable_train_out_folders_are_refused_before_reading_data(tmp_path, capsys, kind):
    target = {
        "a file": _existing_file(tmp_path),
        "a path under a file": _existing_file(tmp_path) / "run",
        "an unwritable folder": Path("/proc/self/run"),
    }[kind]
    missing_data = tmp_path / "absent.nc"  # checked after --out: the error names --out, not the data
    line = refused(train_flags(missing_data, target), capsys, tmp_path / "notes.txt")
    assert line.startswith(f"metamap: error: --out {target}"), line


def test_train_refuses_a_run_folder_of_another_variable_or_task(trained, tmp_path, capsys):
    data, runs = trained
    run = shutil.copytree(runs["fill"], tmp_path / "run")
    pr = write_field(tmp_path / "pr.nc", reference_values() * 1e-5, var="pr", units="mm s-1")
    line = refused([*train_flags(pr, run, var="pr"), "--resume"], capsys, run, pr)
    assert "holds variable 'pr' [mm s-1] but the run folder" in line and "'tasmax' [K]" in line
    line = refused([*train_flags(data, run, task="generate"), "--resume"], capsys, run, data)
    assert "holds a fill run; a generate run needs its own folder" in line
    line = refused([*train_flags(data, run), "--resume", "--kriging-neighbours", "32"], capsys, run, data)
    assert "was trained with --kriging-neighbours 16, not 32" in line
    line = refused(train_flags(data, run), capsys, run, data)
    assert "--resume" in line and "--overwrite" in line
    assert main([str(a) for a in [*train_flags(data, run), "--resume"]]) == 0  # same data and task: it reloads


def _sentinel_file(kind: str, path: Path) -> tuple[Path, np.ndarray]:
    """A tasmax file whose last field marks ``GAPS`` missing the way ``kind`` says: ``(file, the values)``."""
    values = reference_values(2)
    raw = values.copy()
    if kind == "_FillValue":
        raw[-1][GAPS] = -9999.0
        return write_field(path, raw, fill_value=-9999.0), values
    if kind == "missing_value":
        raw[-1][GAPS] = -999.0
        return write_field(path, raw, attrs={"missing_value": np.float32(-999.0)}), values
    if kind == "packed int16 with missing_value":
        packed = np.round((values - 285.0) / 0.01).astype(np.int16)
        packed[-1][GAPS] = -32767
        values = (packed * 0.01 + 285.0).astype(np.float32)
        attrs = {"scale_factor": 0.01, "add_offset": 285.0, "missing_value": np.int16(-32767)}
        return write_field(path, packed, dtype="i2", attrs=attrs), values
    if kind == "valid_min excluding -9999":
        raw[-1][GAPS] = -9999.0
        return write_field(path, raw, attrs={"valid_min": np.float32(150.0)}), values
    if kind == "netCDF default fill":
        raw[-1][GAPS] = netCDF4.default_fillvals["f4"]
        return write_field(path, raw), values
    raise ValueError(kind)


SENTINELS = [
    "_FillValue",
    "missing_value",
    "packed int16 with missing_value",
    "valid_min excluding -9999",
    "netCDF default fill",
]


@pytest.mark.parametrize("kind", SENTINELS)
def test_missing_value_sentinels_are_filled_as_gaps(trained, tmp_path, kind):
    data, runs = trained
    path, values = _sentinel_file(kind, tmp_path / "gappy.nc")
    out = tmp_path / "filled.nc"
    assert main([str(a) for a in ["geo", "fill", *sample_flags(runs["fill"], path, out), "--times", "-1"]]) == 0
    with xr.open_dataset(out) as filled:
        members, observed = filled["tasmax"].values[:, 0], filled["observed"].values[0]
    gaps = np.zeros((H, W), bool)
    gaps[GAPS] = True
    np.testing.assert_array_equal(observed, (~gaps).astype(np.int8))
    assert np.isfinite(members[:, gaps]).all() and np.abs(members[:, gaps] - 285).max() < 60
    np.testing.assert_allclose(members[:, ~gaps], np.broadcast_to(values[-1][~gaps], (2, (~gaps).sum())), rtol=1e-6)


@pytest.mark.parametrize("value", [0.0, 3.5])
def test_kriging_a_constant_field_gives_that_constant(value):
    observed = np.random.default_rng(0).random((H, W)) < 0.5
    field = np.where(observed, value, np.nan)
    mean, variance = ordinary_kriging(field, observed, LAT, LON)
    np.testing.assert_array_equal(mean, np.full((H, W), value))
    np.testing.assert_array_equal(variance, np.zeros((H, W)))
    background = np.arange(H * W, dtype=np.float64).reshape(H, W)
    mean, _ = ordinary_kriging(field + background, observed, LAT, LON, background=background)
    np.testing.assert_array_equal(mean, background + value)


@pytest.mark.parametrize("codec_place", ["filters", "compressor"])
@pytest.mark.parametrize("consolidated", [False, True])
def test_a_zarr_store_with_a_pickle_codec_is_refused_unread(trained, tmp_path, capsys, codec_place, consolidated):
    data, runs = trained
    marker = tmp_path / "payload-ran"
    store = write_pickle_zarr(tmp_path / "crafted.zarr", marker, codec_place, consolidated)
    line = refused(["geo", "fill", *sample_flags(runs["fill"], store, tmp_path / "filled.nc")], capsys, store)
    assert "pickle codec" in line
    line = refused(train_flags(store, tmp_path / "run"), capsys, store)
    assert "pickle codec" in line
    assert not marker.exists()


def test_a_pickle_named_like_netcdf_is_refused_unread(tmp_path, capsys):
    marker = tmp_path / "payload-ran"
    fake = tmp_path / "tasmax.nc"
    fake.write_bytes(pickle.dumps(WritesMarker(marker)))
    line = refused(train_flags(fake, tmp_path / "run"), capsys, fake)
    assert "not a netCDF file" in line
    assert not marker.exists()
