"""``metamap geo train | fill | forecast | sample`` end to end on a tiny generated netCDF."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from metamap.cli import main

H, W = 9, 11


@pytest.fixture
def data_file(tmp_path):
    rng = np.random.default_rng(0)
    n_times = 30
    values = (285 + np.cumsum(rng.standard_normal((n_times, H, W)), axis=0) * 0.2).astype(np.float32)
    values[:, 0, :3] = np.nan  # land in an SST file: NaN at every time
    values[-1, 4:7, 5:9] = np.nan  # a cloud over the last field
    ds = xr.Dataset(
        {
            "sst": (
                ("valid_time", "latitude", "longitude"),
                values,
                {"units": "K", "long_name": "sea surface temperature", "standard_name": "sea_surface_temperature"},
            )
        },
        coords={
            "valid_time": pd.date_range("2019-03-01", periods=n_times, freq="h"),
            "latitude": np.linspace(50, 54, H),
            "longitude": np.linspace(-6, 0, W),
        },
        attrs={"institution": "a test"},
    )
    path = tmp_path / "sst.nc"
    ds.to_netcdf(path)
    return path, values


def _train(path, tmp_path, task):
    run = tmp_path / task
    code = main(
        [
            "geo",
            "train",
            "--data",
            str(path),
            "--var",
            "sst",
            "--task",
            task,
            "--out",
            str(run),
            "--steps",
            "2",
            "--batch",
            "2",
            "--patch",
            "8",
            "--base",
            "8",
            "--k",
            "2",
            "--no-progress",
        ]
    )
    assert code == 0
    return run


def test_train_fill_forecast_sample_end_to_end(data_file, tmp_path, capsys):
    path, values = data_file
    common = ["--data", str(path), "--var", "sst", "--members", "3", "--steps", "2"]

    fill_run = _train(path, tmp_path, "fill")
    out = tmp_path / "filled.nc"
    assert main(["geo", "fill", "--run", str(fill_run), "--out", str(out), "--times", "28", "29", *common]) == 0
    filled = xr.open_dataset(out)
    assert filled["sst"].dims == ("member", "valid_time", "latitude", "longitude")
    assert filled["sst"].shape == (3, 2, H, W)
    assert filled["sst"].attrs["standard_name"] == "sea_surface_temperature"
    assert filled.attrs["institution"] == "a test"
    history = filled.attrs["history"]  # the command with its inputs and options, and the run
    fill_parts = ("metamap geo fill", f"--data {path}", "--var sst", "--members 3", "--times 28 29", "--sampler dpmpp")
    for part in (*fill_parts, "(fill run"):
        assert part in history, part
    last = filled["sst"].values[:, 1]
    known = np.isfinite(values[-1])
    np.testing.assert_array_equal(last[:, known], np.broadcast_to(values[-1][known], (3, known.sum())))
    assert np.isfinite(last[:, 4:7, 5:9]).all()
    assert np.isnan(last[:, 0, :3]).all()
    filled.close()
    assert (tmp_path / "filled.png").stat().st_size > 0  # observed, mean, a member, spread

    generate_run = _train(path, tmp_path, "generate")
    out = tmp_path / "inpainted.nc"
    assert (
        main(
            ["geo", "fill", "--run", str(generate_run), "--out", str(out), "--times", "29", "--resample", "2", *common]
        )
        == 0
    )
    with xr.open_dataset(out) as inpainted:
        assert "--sampler ddpm" in inpainted.attrs["history"]  # training-free inpainting's own default
        np.testing.assert_array_equal(
            inpainted["sst"].values[:, 0][:, known], np.broadcast_to(values[-1][known], (3, known.sum()))
        )
    out = tmp_path / "samples.nc"
    capsys.readouterr()
    assert main(["geo", "sample", "--run", str(generate_run), "--out", str(out), *common]) == 0
    assert "sampling: 2/2" in capsys.readouterr().err  # progress over the sampler's steps
    assert (tmp_path / "samples.png").stat().st_size > 0
    with xr.open_dataset(out) as samples:
        assert samples["sst"].shape == (3, 1, H, W)

    forecast_run = _train(path, tmp_path, "forecast")
    out = tmp_path / "forecast.nc"
    assert (
        main(
            [
                "geo",
                "forecast",
                "--run",
                str(forecast_run),
                "--out",
                str(out),
                "--start",
                "20",
                "--leads",
                "1",
                "6",
                *common,
            ]
        )
        == 0
    )
    assert "forecast leads: 2/2" in capsys.readouterr().err
    assert (tmp_path / "forecast.png").stat().st_size > 0
    with xr.open_dataset(out) as forecast:
        assert forecast["sst"].shape == (3, 2, H, W)
        np.testing.assert_array_equal(
            forecast["valid_time"].values, pd.to_datetime(["2019-03-01T21:00", "2019-03-02T02:00"]).values
        )
        assert np.isfinite(forecast["sst"].values[:, :, 3:, 3:]).all()

    assert main(["geo", "forecast", "--run", str(fill_run), "--out", str(out), *common]) == 2
    assert "is a fill run" in capsys.readouterr().err


def test_a_transform_that_does_not_fit_the_variable_is_refused(data_file, tmp_path, capsys):
    path, _ = data_file
    for transform, expected in (("log1p", "needs precipitation units"), ("sqrt", "--transform must be")):
        args = ["geo", "train", "--data", str(path), "--var", "sst", "--out", str(tmp_path / transform)]
        assert main([*args, "--transform", transform, "--steps", "1", "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("metamap: error:") and expected in err[0]


def test_train_writes_one_loss_row_per_logged_step_and_the_curve(data_file, tmp_path):
    path, _ = data_file
    run = tmp_path / "logged"
    args = ["geo", "train", "--data", str(path), "--var", "sst", "--out", str(run), "--batch", "2", "--patch", "8"]
    assert main([*args, "--base", "8", "--steps", "7", "--log-every", "2", "--no-progress"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [2, 4, 6, 7]  # every 2 steps, and the last
    assert all(np.isfinite(row["train_loss"]) and row["train_loss"] > 0 for row in rows)
    with (run / "metrics.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in table] == [2, 4, 6, 7]
    assert [float(r["train_loss"]) for r in table] == pytest.approx([row["train_loss"] for row in rows])
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
