"""``metamap traffic train | adapt | evaluate | predict`` end to end on a tiny generated city, and its one-line errors."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metamap.cli import main
from metamap.traffic.experiment import SIMPLE_BASELINES

N_SENSORS = 12
DAYS = 4
PER_DAY = 288
TINY = ["--hidden", "16", "--meta-batch", "4", "--steps", "3"]


def _speeds(n_sensors: int, days: int, seed: int) -> np.ndarray:
    """``[T, N]`` speeds in mph: a free-flow level with morning and evening dips, noise and a few zeros."""
    rng = np.random.default_rng(seed)
    hours = np.arange(days * PER_DAY) / 12.0 % 24
    free = rng.uniform(55, 68, n_sensors)
    depth = rng.uniform(5, 25, n_sensors)
    rush = np.exp(-((hours - 8) ** 2) / 2)[:, None] + 0.8 * np.exp(-((hours - 17.5) ** 2) / 3)[:, None]
    speeds = free - depth * rush + rng.normal(0, 1.5, (len(hours), n_sensors))
    speeds[rng.random(speeds.shape) < 0.02] = 0.0  # missing readings
    return speeds.astype(np.float32)


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    """The same kind of city as METR-LA files (.h5 + DCRNN pickle) and as a PeMS archive (.npz + CSV)."""
    folder = tmp_path_factory.mktemp("city")
    ids = [str(770000 + 7 * i) for i in range(N_SENSORS)]
    times = pd.date_range("2012-03-05", periods=DAYS * PER_DAY, freq="5min")
    pd.DataFrame(_speeds(N_SENSORS, DAYS, 0), index=times, columns=ids).to_hdf(folder / "city.h5", key="df")
    distance = np.abs(np.subtract.outer(np.arange(N_SENSORS), np.arange(N_SENSORS))) * 800.0
    adjacency = np.where(distance <= 1600, np.exp(-((distance / 1000) ** 2)), 0.0)
    with open(folder / "adj.pkl", "wb") as f:
        pickle.dump([ids, {s: i for i, s in enumerate(ids)}, adjacency.astype(np.float32)], f)

    n_pems, pems_days = 8, 3
    speed = _speeds(n_pems, pems_days, 1)
    flow = np.where(speed > 0, 300 - 2 * speed, 0)
    occupancy = np.where(speed > 0, 0.5 - speed / 200, 0)
    np.savez(folder / "pems.npz", data=np.stack([flow, occupancy, speed], axis=-1))
    edges = [(i, i + 1, 900.0 + 50 * i) for i in range(n_pems - 1)]
    pd.DataFrame(edges, columns=["from", "to", "cost"]).to_csv(folder / "pems.csv", index=False)
    pd.DataFrame(edges[:5], columns=["from", "to", "cost"]).to_csv(folder / "partial.csv", index=False)
    negative = speed.copy()
    negative[3, 2] = negative[7, 4] = -1
    np.savez(folder / "negative.npz", data=negative)
    np.savez(folder / "daily.npz", data=_speeds(n_pems, 2, 2)[:400])  # 400 days of daily readings
    return folder


def _finite(errors: dict) -> bool:
    return all(math.isfinite(v) for horizon in errors.values() for v in horizon.values())


@pytest.mark.slow
def test_train_then_adapt(city, tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "traffic",
                "train",
                "--data",
                str(city / "city.h5"),
                "--adj",
                str(city / "adj.pkl"),
                "--out",
                str(run),
                "--method",
                "fomaml",
                "--train-days",
                "3",
                "--no-progress",
                *TINY,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "run folder" in out and str(run) in out
    state = json.loads((run / "checkpoints" / "step-000000003" / "state.json").read_text())
    saved = state["config"]["run"]
    assert saved["kind"] == "traffic" and saved["method"] == "fomaml" and saved["graph_hops"] == 2
    assert saved["data"]["file"] == "city.h5" and saved["data"]["steps_per_day"] == PER_DAY
    assert saved["scaler"]["scale"] > 0 and len(saved["validation_sensors"]) == 1
    assert state["config"]["adaptation"]["method"] == "fomaml"
    assert state["config"]["adaptation"]["options"]["steps"] in (1, 5, 10, 20, 40)

    out_dir = tmp_path / "adapted"
    assert (
        main(
            [
                "traffic",
                "adapt",
                "--run",
                str(run),
                "--data",
                str(city / "city.h5"),
                "--adj",
                str(city / "adj.pkl"),
                "--out",
                str(out_dir),
                "--support",
                "2d",
            ]
        )
        == 0
    )
    assert "persistence" in capsys.readouterr().out
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert set(metrics["methods"]) == {"fomaml", *SIMPLE_BASELINES}
    for summary in metrics["methods"].values():
        assert _finite(summary["errors"]) and len(summary["mae_by_step"]) == 12
    with np.load(out_dir / "predictions.npz", allow_pickle=False) as saved_predictions:
        prediction, truth = saved_predictions["prediction"], saved_predictions["truth"]
        origins = saved_predictions["origin_time"].astype("datetime64[ns]")
        # The test period is days 3-4; the first forecast is made at the last step of day 2.
        n_windows = 2 * PER_DAY - 11
        assert prediction.shape == truth.shape == (N_SENSORS, n_windows, 12)
        assert saved_predictions["prediction_historical_average"].shape == prediction.shape
        assert np.array_equal(saved_predictions["prediction_fomaml"], prediction)
        assert saved_predictions["sensor_ids"].dtype.kind == "U" and saved_predictions["sensor_ids"][0] == "770000"
        assert origins[0] == np.datetime64("2012-03-06T23:55")
        assert np.isfinite(prediction).all()
    assert (out_dir / "forecasts.png").stat().st_size > 10_000
    assert (out_dir / "error_by_horizon.png").stat().st_size > 10_000

    # --steps overrides the chosen adaptation; a traffic run is not one for the generic evaluate.
    assert (
        main(
            [
                "traffic",
                "adapt",
                "--run",
                str(run),
                "--data",
                str(city / "city.h5"),
                "--adj",
                str(city / "adj.pkl"),
                "--out",
                str(tmp_path / "zero"),
                "--steps",
                "0",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "zero" / "metrics.json").read_text())["options"] == {"steps": 0}
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 2
    assert "is a traffic run" in capsys.readouterr().err


def test_evaluate_new_sensors(city, tmp_path, capsys):
    out_dir = tmp_path / "p1"
    assert (
        main(
            [
                "traffic",
                "evaluate",
                "--data",
                str(city / "city.h5"),
                "--adj",
                str(city / "adj.pkl"),
                "--out",
                str(out_dir),
                "--methods",
                "maml,persistence,target_only_linear",
                "--no-progress",
                *TINY,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "graph/maml" in out and "graph/persistence" in out and "MAE 1h" in out
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["protocol"] == "new_sensors" and set(metrics["targets"]) == {"day", "6h"}
    assert metrics["n_targets"]["day"] == round(0.3 * N_SENSORS)
    for summary in metrics["targets"]["day"].values():
        assert _finite(summary["errors"])
    with np.load(out_dir / "predictions.npz", allow_pickle=False) as saved:
        # 4 days, default train days 3 (2 would leave no quarter day to score the validation sensors): test = day 4.
        expected = (round(0.3 * N_SENSORS), PER_DAY - 11, 12)
        assert saved["truth"].shape == saved["prediction_maml"].shape == expected
        assert saved["prediction_6h_persistence"].shape == expected
        assert list(saved["methods"]) == ["maml", "persistence", "target_only_linear"]
    assert (out_dir / "error_by_horizon.png").is_file() and (out_dir / "forecasts.png").is_file()


def test_evaluate_new_sensors_on_a_short_file_with_a_six_hour_support(city, tmp_path, capsys):
    """3 days of flow: one training day holds both 6 h supports and 12 h to score the validation sensors."""
    out_dir = tmp_path / "short"
    argv = ["traffic", "evaluate", "--data", str(city / "pems.npz"), "--step", "5min", "--channel", "flow"]
    argv += ["--support", "6h", "--out", str(out_dir), "--methods", "persistence,seasonal_naive_day", "--no-progress"]
    assert main([*argv, *TINY]) == 2
    assert "no training window holds a reading a day earlier" in capsys.readouterr().err
    assert main([*argv, "--no-seasonal", *TINY]) == 0
    assert "train on 1 day, targets adapt on the last 6h of day 1" in capsys.readouterr().out
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert set(metrics["targets"]) == {"6h"} and metrics["n_targets"]["6h"] == round(0.3 * 8)
    with np.load(out_dir / "predictions.npz", allow_pickle=False) as saved:
        assert saved["truth"].shape == (round(0.3 * 8), 2 * PER_DAY - 11, 12)  # days 2-3


def test_evaluate_new_city(city, tmp_path, capsys):
    out_dir = tmp_path / "p2"
    assert (
        main(
            [
                "traffic",
                "evaluate",
                "--data",
                str(city / "city.h5"),
                "--target-data",
                str(city / "pems.npz"),
                "--target-step",
                "5min",
                "--out",
                str(out_dir),
                "--model",
                "node",
                "--methods",
                "reptile,historical_average",
                "--no-progress",
                *TINY,
            ]
        )
        == 0
    )
    assert "node/reptile" in capsys.readouterr().out
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["protocol"] == "new_city" and metrics["target_data"] == "pems.npz"
    with np.load(out_dir / "predictions.npz", allow_pickle=False) as saved:
        assert saved["prediction_reptile"].shape == (8, 2 * PER_DAY - 11, 12)
        assert list(saved["sensor_ids"]) == [str(i) for i in range(8)]


def test_graph_model_on_an_npz_city_with_its_distance_csv(city, tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "traffic",
                "train",
                "--data",
                str(city / "pems.npz"),
                "--adj",
                str(city / "pems.csv"),
                "--channel",
                "speed",
                "--start",
                "2018-01-01",
                "--step",
                "5min",
                "--method",
                "pretrain",
                "--out",
                str(run),
                "--no-progress",
                *TINY,
            ]
        )
        == 0
    )
    assert "pretrain_finetune" in capsys.readouterr().out
    assert (
        main(
            [
                "traffic",
                "adapt",
                "--run",
                str(run),
                "--data",
                str(city / "pems.npz"),
                "--adj",
                str(city / "pems.csv"),
                "--step",
                "5min",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["method"] == "pretrain_finetune" and metrics["model"] == "graph"
    assert metrics["n_windows"] == 2 * PER_DAY - 11


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["traffic", "train", "--data", "{city}/absent.h5", "--out", "{tmp}/run"], "absent.h5"),
        (
            ["traffic", "train", "--data", "{city}/daily.npz", "--step", "1d", "--out", "{tmp}/run"],
            "a support block of 1 steps holds no window of 12 steps of history and 12 ahead",
        ),
        (["traffic", "train", "--data", "{city}/city.h5", "--model", "graph", "--out", "{tmp}/run"], "--adj"),
        (
            ["traffic", "train", "--data", "{city}/city.h5", "--method", "mamll", "--out", "{tmp}/run"],
            "unknown method 'mamll'",
        ),
        (
            ["traffic", "adapt", "--run", "{tmp}", "--data", "{city}/city.h5", "--out", "{tmp}/out"],
            "not a metamap checkpoint",
        ),
        (
            [
                "traffic",
                "evaluate",
                "--data",
                "{city}/city.h5",
                "--target-data",
                "{city}/pems.npz",
                "--target-step",
                "5min",
                "--adj",
                "{city}/adj.pkl",
                "--out",
                "{tmp}/out",
            ],
            "--target-adj",
        ),
        (["traffic", "train", "--data", "{city}/pems.npz", "--out", "{tmp}/run"], "time step must be given (--step"),
        (
            ["traffic", "train", "--data", "{city}/city.h5", "--step", "15min", "--out", "{tmp}/run"],
            "city.h5 has 5-minute steps, but 15 min was given",
        ),
        (
            ["traffic", "train", "--data", "{city}/negative.npz", "--step", "1h", "--out", "{tmp}/run"],
            "2 negative values (-1.0); if they are missing-value codes, name them (--missing-value)",
        ),
        (
            [
                "traffic",
                "train",
                "--data",
                "{city}/pems.npz",
                "--step",
                "5min",
                "--adj",
                "{city}/partial.csv",
                "--out",
                "{tmp}/run",
            ],
            "expected distances for all 8 sensors of the readings, but 2 are in no row, e.g. '6', '7'",
        ),
        (
            ["traffic", "evaluate", "--data", "{city}/city.h5", "--support", "3d", "--out", "{tmp}/out"],
            "--train-days >= 7",
        ),
        (
            ["traffic", "evaluate", "--data", "{city}/city.h5", "--support", "7min", "--out", "{tmp}/out"],
            "--support: expected a multiple of the data's 5min step, got 7min",
        ),
        (
            ["traffic", "evaluate", "--data", "{city}/city.h5", "--methods", "maml,magic", "--out", "{tmp}/out"],
            "unknown method(s) ['magic']",
        ),
    ],
)
def test_mistakes_end_with_one_clear_line(city, tmp_path, capsys, argv, message):
    argv = [a.format(city=city, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("metamap: error:") and message in err and err.count("\n") == 1
    assert "Traceback" not in err


def test_adapt_refuses_too_long_a_support_and_runs_of_another_kind(city, tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "traffic",
                "train",
                "--data",
                str(city / "city.h5"),
                "--model",
                "node",
                "--out",
                str(run),
                "--no-progress",
                "--method",
                "anil",
                *TINY[:-1],
                "1",
            ]
        )
        == 0
    )
    capsys.readouterr()
    base = ["traffic", "adapt", "--run", str(run), "--data", str(city / "city.h5"), "--out", str(tmp_path / "o")]
    assert main([*base, "--support", "4d"]) == 2  # the file holds exactly 4 days: nothing left to forecast
    err = capsys.readouterr().err
    assert err.startswith("metamap: error:") and "no steps left to forecast" in err
    assert main([*base, "--support", "5d"]) == 2
    assert "--support 5d needs 1440 steps" in capsys.readouterr().err
    # A run whose speed normalization is in the format before the Standardizer ({"mean", "std"}) is refused.
    for state_file in (run / "checkpoints").glob("*/state.json"):
        state = json.loads(state_file.read_text())
        state["config"]["run"]["scaler"] = {"mean": 50.0, "std": 5.0}
        state_file.write_text(json.dumps(state))
    assert main(base) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unreadable normalization" in err and "trained again" in err
    # A run folder of the generic command is not a traffic run.
    assert (
        main(
            [
                "train",
                "--hidden",
                "8",
                "--steps",
                "2",
                "--meta-batch",
                "2",
                "--episodes",
                "0",
                "--no-progress",
                "--out",
                str(tmp_path / "sine"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main([*base[:3], str(tmp_path / "sine"), *base[4:]]) == 2
    assert "is not a traffic run" in capsys.readouterr().err
    # Training again into a finished run folder without --resume is refused.
    assert (
        main(
            [
                "traffic",
                "train",
                "--data",
                str(city / "city.h5"),
                "--model",
                "node",
                "--out",
                str(run),
                "--no-progress",
                *TINY,
            ]
        )
        == 2
    )
    assert "--resume" in capsys.readouterr().err


def test_patterns_command_writes_json_and_plots(shared_data, tmp_path, capsys):
    folder = shared_data / "traffic"
    out = tmp_path / "patterns"
    assert (
        main(
            [
                "traffic",
                "patterns",
                "--data",
                str(folder / "metr-la-week.h5"),
                "--target-data",
                str(folder / "PEMS04.npz"),
                "--target-step",
                "5min",
                "--out",
                str(out),
                "--steps",
                "3",
                "--shots",
                "1",
            ]
        )
        == 0
    )
    assert "balanced accuracy" in capsys.readouterr().out
    result = json.loads((out / "patterns.json").read_text())
    assert (out / "prototypes.png").stat().st_size > 10_000 and "1" in result["accuracy"]


@pytest.mark.parametrize("step", ["soon", "30s", "0min"])
def test_a_step_that_is_not_whole_minutes_is_a_usage_error(city, tmp_path, capsys, step):
    with pytest.raises(SystemExit) as exit_info:
        main(["traffic", "train", "--data", str(city / "pems.npz"), "--step", step, "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--step: expected a time step" in err and err.count("\n") == 1


def test_missing_value_flags_parse():
    """``--missing-value`` repeats, ``--keep-zeros`` turns zeros into readings; the defaults keep today's reading."""
    from metamap.cli import _parser

    argv = ["traffic", "train", "--data", "x.npz", "--missing-value", "-1", "--missing-value", "9999", "--keep-zeros"]
    args = _parser().parse_args([*argv, "--out", "run"])
    assert args.missing_value == [-1.0, 9999.0] and args.zero_is_missing is False
    defaults = _parser().parse_args(["traffic", "adapt", "--run", "r", "--data", "x.h5", "--out", "o"])
    assert defaults.missing_value == [] and defaults.zero_is_missing is True and defaults.step is None


def test_a_time_zone_aware_file_keeps_local_time_and_the_run_records_its_zone(city, tmp_path, capsys):
    frame = pd.read_hdf(city / "city.h5", "df")
    frame.index = frame.index.tz_localize("America/Los_Angeles")
    local = tmp_path / "local.h5"
    frame.to_hdf(local, key="df")
    run = tmp_path / "run"
    argv = ["--data", str(local), "--model", "node", "--no-progress", *TINY]
    assert main(["traffic", "train", *argv, "--step", "5min", "--out", str(run)]) == 0
    saved = json.loads((run / "checkpoints" / "step-000000003" / "state.json").read_text())["config"]["run"]["data"]
    assert saved["timezone"] == "America/Los_Angeles" and saved["step_minutes"] == 5
    out_dir = tmp_path / "adapted"
    assert main(["traffic", "adapt", "--run", str(run), "--data", str(local), "--out", str(out_dir)]) == 0
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["timezone"] == "America/Los_Angeles"
    assert metrics["test_period"][0] == "2012-03-06T00:00"  # local midnight after the first day, not 08:00 UTC


def test_predict_forecasts_every_sensor_after_the_end_of_the_file(city, tmp_path, capsys):
    run = tmp_path / "run"
    train = ["traffic", "train", "--data", str(city / "city.h5"), "--model", "node", "--out", str(run)]
    assert main([*train, "--no-progress", "--horizons", "15min,1h", *TINY]) == 0
    capsys.readouterr()
    out = tmp_path / "latest" / "forecasts.csv"
    base = ["traffic", "predict", "--run", str(run), "--data", str(city / "city.h5")]
    assert main([*base, "--out", str(out)]) == 0
    assert "forecasts from 2012-03-08T23:55 to 2012-03-09T00:55" in capsys.readouterr().out
    table = pd.read_csv(out)
    assert len(table) == N_SENSORS * 12 and set(SIMPLE_BASELINES) <= set(table.columns)
    assert table["lead_minutes"].tolist()[:12] == list(range(5, 65, 5))
    assert table["valid_time"].iloc[0] == "2012-03-09T00:00" and (table["issued"] == "2012-03-08T23:55").all()
    assert np.isfinite(table["forecast"]).all() and (table["method"] == "maml").all()
    readings = pd.read_hdf(city / "city.h5", "df").replace(0.0, np.nan).ffill()
    last = table.groupby("sensor_id", sort=False)["persistence"].first().to_numpy()
    np.testing.assert_allclose(last, readings.iloc[-1].to_numpy(), rtol=1e-5)
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert main([*base, "--out", str(tmp_path / "f.nc")]) == 0
    import xarray as xr

    with xr.open_dataset(tmp_path / "f.nc") as saved:
        assert saved["forecast"].shape == (N_SENSORS, 12) and saved.attrs["method"] == "maml"
        np.testing.assert_allclose(saved["forecast"].values.reshape(-1), table["forecast"].to_numpy(), rtol=1e-5)
    capsys.readouterr()
    for extra, message in (
        (["--out", str(tmp_path / "f.json")], "expected a .csv or .nc file"),
        (["--out", str(tmp_path / "g.csv"), "--support", "5d"], "--support 5d needs 1440 steps"),
        (["--out", str(city / "city.h5")], ""),
    ):
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("metamap: error:") and message in err and err.count("\n") == 1


def test_readings_are_called_mph_only_when_they_are_speeds():
    from argparse import Namespace
    from types import SimpleNamespace

    from metamap.traffic.commands import _unit

    speeds, counts = SimpleNamespace(holds_counts=False), SimpleNamespace(holds_counts=True)
    h5 = Namespace(units=None, data=Path("city.h5"), channel="speed")
    assert _unit(h5, speeds) == "mph"
    assert _unit(h5, counts) == "the file's unit"  # pedestrian counts converted to the METR-LA layout
    assert _unit(Namespace(units=None, data=Path("pems.npz"), channel="flow"), speeds) == "the file's unit"
    assert _unit(Namespace(units="km/h", data=Path("city.h5"), channel="speed"), counts) == "km/h"
