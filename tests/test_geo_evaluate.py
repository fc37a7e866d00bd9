"""``metamap geo evaluate`` end to end on a small generated grid, and its one-line refusals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from metamap.cli import main

H, W, T = 12, 14, 30
BASELINES = (
    "field_mean",
    "field_mean_anomaly",
    "climatology",
    "linear",
    "cubic",
    "linear_anomaly",
    "kriging",
    "kriging_anomaly",
    "kriging_local_anomaly",
)


def _write(path, values, var="t2m", lat=None):
    lat = np.linspace(50, 56, H) if lat is None else lat
    ds = xr.Dataset(
        {var: (("time", "lat", "lon"), values.astype(np.float32), {"units": "K"})},
        coords={
            "time": pd.date_range("2019-03-01", periods=len(values), freq="D"),
            "lat": lat,
            "lon": np.linspace(-6, 2, W),
        },
    )
    ds.to_netcdf(path)
    return path


@pytest.fixture(scope="module")
def smooth(tmp_path_factory):
    """Smooth fields: a fixed north-south gradient plus a moving large-scale wave, so that the spatial
    baselines have something to find that the field mean does not."""
    folder = tmp_path_factory.mktemp("evaluate")
    yy, xx = np.meshgrid(np.linspace(0, 1, H), np.linspace(0, 1, W), indexing="ij")
    rng = np.random.default_rng(0)
    values = np.stack(
        [280 + 6 * yy + 2 * np.sin(2 * np.pi * (xx + 0.7 * yy) + phase) for phase in rng.uniform(0, 2 * np.pi, T)]
    )
    data = _write(folder / "smooth.nc", values)
    run = folder / "run"
    common = ["--batch", "2", "--patch", "8", "--base", "8", "--train-days", "20", "--no-progress"]
    assert main(["geo", "train", "--data", str(data), "--var", "t2m", "--out", str(run), "--steps", "3", *common]) == 0
    return folder, data, run


def _evaluate(data, run, out, *extra, var="t2m", times=("--times", "20", "22", "--tune-times", "15")):
    return main(
        [
            "geo",
            "evaluate",
            "--run",
            str(run),
            "--data",
            str(data),
            "--var",
            var,
            "--out",
            str(out),
            "--members",
            "3",
            "--steps",
            "2",
            *times,
            "--no-progress",
            *extra,
        ]
    )


@pytest.mark.slow
def test_evaluate_scores_every_method_and_draws_the_maps(smooth, capsys):
    folder, data, run = smooth
    out = folder / "sparse"
    assert _evaluate(data, run, out, "--mask", "sparse90") == 0
    result = json.loads((out / "evaluation.json").read_text())
    methods = result["methods"]
    assert set(BASELINES) | {"diffusion_residual", "diffusion_residual_uncalibrated"} == set(methods)
    assert result["times"] == [20, 22] and result["tune_times"] == [15]
    for name, scores in methods.items():
        assert np.isfinite([scores["rmse"], scores["crps"]]).all(), name
        assert scores["n_fields"] == 2
    # a smooth field: interpolation and kriging find the gradient and the wave, the field mean cannot
    assert methods["kriging"]["rmse"] < 0.6 * methods["field_mean"]["rmse"]
    assert methods["linear"]["rmse"] < 0.6 * methods["field_mean"]["rmse"]
    # calibration keeps a share of the network's mean correction (all of it: the uncalibrated mean; none: the
    # kriging the run stands on) and rescales the spread
    weight = result["calibration"]["mean_weight"]
    assert weight in (0.0, 0.25, 0.5, 0.75, 1.0) and result["calibration"]["spread"] > 0
    ends = [methods[name]["rmse"] for name in ("diffusion_residual_uncalibrated", "kriging_local_anomaly")]
    assert methods["diffusion_residual"]["rmse"] <= max(ends) * (1 + 1e-6)  # a norm of a convex combination
    if weight == 1.0:
        assert methods["diffusion_residual"]["rmse"] == pytest.approx(
            methods["diffusion_residual_uncalibrated"]["rmse"]
        )
    if weight == 0.0:
        assert methods["diffusion_residual"]["rmse"] == pytest.approx(methods["kriging_local_anomaly"]["rmse"])
    assert result["kriging_reference"] in ("kriging", "kriging_anomaly")
    reference = methods[result["kriging_reference"]]["rmse"]
    assert result["rmse_ratio_vs_kriging"] == pytest.approx(methods["diffusion_residual"]["rmse"] / reference)
    # every hidden pixel of both fields has one rank among 3 members: 90 % of the grid, twice
    assert len(result["rank_histogram"]) == 4
    assert sum(result["rank_histogram"]) == 2 * round(0.9 * H * W)
    for picture in ("maps.png", "rank_histogram.png"):
        assert (out / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "kriging_anomaly" in capsys.readouterr().out


@pytest.mark.slow
def test_evaluate_with_the_users_mask_file_on_the_days_the_run_left_out(smooth):
    folder, data, run = smooth
    observed = np.zeros((H, W), bool)
    observed[:, ::3] = True  # north-south lines of stations
    np.save(folder / "mask.npy", observed)
    out = folder / "own"
    assert _evaluate(data, run, out, "--mask", str(folder / "mask.npy"), times=()) == 0
    result = json.loads((out / "evaluation.json").read_text())
    # the run trained on March 1-20 (index 0-19): 8 of the 10 later days scored, the other 2 tune
    assert len(result["times"]) == 8 and len(result["tune_times"]) == 2
    assert sorted(result["times"] + result["tune_times"]) == list(range(20, 30))
    assert sum(result["rank_histogram"]) == 8 * int((~observed).sum())


def test_test_days_score_the_days_after_them_and_tune_on_the_days_between(smooth, tmp_path):
    _, data, run = smooth
    assert _evaluate(data, run, tmp_path / "late", "--mask", "sparse90", "--test-days", "25", times=()) == 0
    result = json.loads((tmp_path / "late" / "evaluation.json").read_text())
    assert result["times"] == [25, 26, 27, 28, 29]  # March 26-30; the run trained on March 1-20
    assert result["tune_times"] == [20, 21, 23, 24]  # 4 of March 21-25, spread


def test_the_runs_kriging_baseline_is_the_estimate_its_fill_stands_on_kriged_once(smooth, tmp_path, monkeypatch):
    calls = []

    def climatology(values, observed, variogram):  # the fill's kriging replaced by estimate 0: the climatology
        calls.append(values.shape)
        return np.zeros_like(values), np.full_like(values, np.sqrt(variogram.total))

    monkeypatch.setattr("metamap.geo.fill.krige", climatology)
    _, data, run = smooth
    assert _evaluate(data, run, tmp_path / "once", "--mask", "sparse90") == 0
    methods = json.loads((tmp_path / "once" / "evaluation.json").read_text())["methods"]
    assert calls == [(H, W)] * 3  # the 2 evaluated fields and the tuning one, each kriged once
    np.testing.assert_allclose(
        methods["kriging_local_anomaly"]["rmse_per_field"], methods["climatology"]["rmse_per_field"], rtol=1e-6
    )


def test_evaluate_refuses_bad_input_in_one_line(smooth, tmp_path, capsys):
    folder, data, run = smooth
    wrong_mask = tmp_path / "wrong.npy"
    np.save(wrong_mask, np.ones((H + 1, W), bool))
    other_grid = _write(tmp_path / "other.nc", np.full((T, H, W), 280.0), lat=np.linspace(40, 46, H))
    other_var = _write(tmp_path / "tas.nc", np.full((T, H, W), 280.0), var="tas")
    cases = [
        ((data, run, tmp_path / "a", "--mask", "sparse90"), {"var": "nope"}, "no variable 'nope'"),
        ((data, run, tmp_path / "b", "--mask", str(wrong_mask)), {}, "expected a mask of the grid's shape [12, 14]"),
        ((data, run, tmp_path / "c", "--mask", "clouds"), {}, "expected sparse90, blobs40, swath"),
        ((other_grid, run, tmp_path / "d", "--mask", "sparse90"), {}, "was trained on"),
        ((other_var, run, tmp_path / "e", "--mask", "sparse90"), {"var": "tas"}, "t2m"),
        ((data, run, tmp_path / "f", "--mask", "sparse90", "--test-days", "10"), {"times": ()}, "training days"),
        ((data, run, tmp_path / "g", "--mask", "sparse90", "--test-days", "31"), {"times": ()}, "no day after 31"),
    ]
    for args, options, expected in cases:
        assert _evaluate(*args, **options) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("metamap: error:") and expected in err[0], err


def test_fill_applies_the_calibration_that_evaluate_fitted_for_its_run(smooth, tmp_path, capsys):
    folder, data, run = smooth
    assert _evaluate(data, run, tmp_path / "fitted", "--mask", "sparse90") == 0
    fitted = json.loads((tmp_path / "fitted" / "evaluation.json").read_text())
    values = xr.open_dataset(data)["t2m"].values
    gappy = values.copy()
    gappy[:, 3:9, 4:10] = np.nan  # a cloud over the middle of every field
    gappy_file = _write(tmp_path / "gappy.nc", gappy)

    def fill(name, calibration=None, seed="0"):
        path = tmp_path / f"{name}.json"
        if calibration is not None:
            path.write_text(json.dumps({**fitted, "calibration": calibration}))
        argv = ["geo", "fill", "--run", str(run), "--data", str(gappy_file), "--var", "t2m", "--times", "25"]
        argv += [
            "--members",
            "4",
            "--steps",
            "2",
            "--seed",
            seed,
            "--no-progress",
            "--out",
            str(tmp_path / f"{name}.nc"),
        ]
        assert main([*argv, *(["--calibration", str(path)] if calibration is not None else [])]) == 0
        with xr.open_dataset(tmp_path / f"{name}.nc") as filled:
            return filled["t2m"].values[:, 0]

    raw, doubled = fill("raw"), fill("doubled", {"mean_weight": 1.0, "spread": 2.0})
    gap = np.isnan(gappy[25])
    np.testing.assert_allclose(doubled[:, ~gap], raw[:, ~gap])  # the observed pixels stay exact
    np.testing.assert_allclose(
        (doubled - doubled.mean(0))[:, gap], 2 * (raw - raw.mean(0))[:, gap], rtol=1e-4, atol=1e-4
    )
    # mean weight 0: the ensemble is centred on the kriging estimate, whatever the network's draws
    kriged = [fill(f"kriged{seed}", {"mean_weight": 0.0, "spread": 1.0}, seed) for seed in ("0", "1")]
    np.testing.assert_allclose(kriged[0].mean(0), kriged[1].mean(0), rtol=1e-5)
    assert not np.allclose(raw.mean(0)[gap], fill("raw1", seed="1").mean(0)[gap])

    (tmp_path / "broken.json").write_text("{not json")
    other = {**fitted, "run": str(tmp_path / "another_run")}
    (tmp_path / "other.json").write_text(json.dumps(other))
    bad = {**fitted, "calibration": {"mean_weight": 1.5, "spread": 1.0}}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    base = ["geo", "fill", "--run", str(run), "--data", str(gappy_file), "--var", "t2m", "--times", "25"]
    base += ["--members", "2", "--steps", "1", "--no-progress", "--out", str(tmp_path / "refused.nc")]
    for name, expected in (
        ("broken", "expected the evaluation.json"),
        ("other", "was fitted for the run"),
        ("bad", "mean_weight in [0, 1]"),
    ):
        assert main([*base, "--calibration", str(tmp_path / f"{name}.json")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err
