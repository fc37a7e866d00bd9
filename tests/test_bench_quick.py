"""Every registered benchmark's ``--quick`` mode runs end to end through the CLI.

``metamap bench NAME --quick --json X`` must exit 0 and write a JSON whose
headline holds the named figures, every number in it finite, its goals block
(where it has one) made of true / false / null verdicts, and the plots beside
it. The quick settings are smoke-test sizes: the values are not checked
against any goal, only that the code behind every headline figure runs.
Benchmarks on ``../shared/data`` skip with the reason where it is absent;
those needing an optional extra skip where it is not installed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pytest

from metamap.bench import BENCHMARKS
from metamap.cli import main

TESTED_ELSEWHERE = {"safety"}  # has its own end-to-end test


@dataclass(frozen=True)
class Spec:
    headline: tuple[str, ...]  # keys that must hold a finite number (or a bool)
    plots: tuple[str, ...]  # PNG names beside the JSON; "{stem}" is the JSON's stem
    goals: str | None = None  # the top-level key of the goals block, where there is one
    may_be_null: tuple[str, ...] = ()  # headline keys that are null when a peer or comparison could not run
    shared_data: bool = False
    extras: tuple[str, ...] = ()  # modules of optional extras the benchmark imports


SPECS = {
    "sinusoid": Spec(
        ("maml_mse_1step", "maml_mse_5step", "maml_mse_10step", "best_mse_1step"), ("{stem}.png", "{stem}_curves.png")
    ),
    "speed": Spec(
        ("speedup_vs_loop",), ("{stem}.png",), may_be_null=("speedup_vs_best_peer", "speedup_vs_best_peer_5steps")
    ),
    "samplers": Spec(
        (
            "dpmpp_std_rel_error_10steps",
            "dpmpp_std_rel_error_25steps",
            "ddim_std_rel_error_25steps",
            "ddpm_std_rel_error_25steps",
            "inpaint_dpmpp_20x1_std_rel_error",
        ),
        ("{stem}.png",),
    ),
    "physics": Spec(
        (
            "physics_mse_ratio_vs_finetune_k10",
            "physics_param_rel_error_k10",
            "physics_mse_ratio_least_squares_vs_finetune_k10",
            "physics_param_rel_error_k10_least_squares",
            "physics_param_err_ratio_vs_lsq",
            "physics_function_evaluations_hybrid",
            "physics_function_evaluations_lsq",
            "physics_misspecified_mse_ratio_vs_lsq",
        ),
        ("{stem}.png",),
    ),
    "astro": Spec(
        (
            "photoz_sigma_nmad_all",
            "photoz_sigma_nmad_20shot_ratio",
            "photoz_outlier_frac_20shot",
            "classify_5shot_acc",
            "photoz_pit_ks",
            "photoz_crps",
            "ood_qso_recall_at_5pct_fpr",
            "photoz_faint_20shot_ratio_vs_global",
        ),
        ("{stem}.png",),
        goals="goals",
        shared_data=True,
        extras=("sklearn",),
    ),
    "energy": Spec(
        (
            "dcopf118_speedup_vs_highs_warm",
            "dcopf118_mean_gap_pct",
            "dcopf118_p99_gap_pct",
            "dcopf118_max_gap_pct",
            "dcopf118_violations",
            "dcopf118_violations_pandapower",
            "dcopf118_fallback_pct",
            "dcopf118_feasible_as_produced_frac",
            "dcopf118_feasible_before_fallback_frac",
            "adapt50_gap_ratio_vs_scratch",
            "transport_speedup_vs_emd",
        ),
        ("{stem}.png",),
        goals="goals_met",
        may_be_null=("gated_steps_ratio_vs_adam",),
        extras=("highspy", "ot", "pandapower", "simbench"),
    ),
    "geo": Spec(
        (
            "rmse_ratio_vs_kriging_sparse90",
            "crps_ratio_vs_kriging_sparse90",
            "spread_skill_sparse90",
            "rmse_ratio_vs_kriging_blobs40",
            "forecast_crps_ratio_vs_persistence_1h",
            "forecast_crps_ratio_vs_persistence_6h",
            *(
                f"{grid}_{key}"
                for grid in ("era5_t2m", "cmip_pr", "cmip_tasmin")
                for key in ("rmse_ratio_vs_kriging_sparse90", "rmse_ratio_vs_kriging_blobs40", "spread_skill_sparse90")
            ),
            "worst_rmse_ratio_vs_kriging",
        ),
        ("{stem}.png", "{stem}_fill.png", "{stem}_forecast.png", "{stem}_generation.png"),
        goals="goals",
        may_be_null=("speedup_vs_repaint", "speedup_method"),
        shared_data=True,
        extras=("xarray", "netCDF4", "pykrige", "diffusers"),
    ),
    "kriging": Spec(
        tuple(
            f"{grid}_{mask}_local{k}_{ratio}"
            for grid in ("era5_t2m", "cmip_pr", "cmip_tasmin")
            for mask in ("sparse90", "blobs40")
            for k in (8, 16, 32, 64)
            for ratio in ("rmse_ratio_vs_pykrige", "time_ratio_vs_local16")
        ),
        ("{stem}.png",),
        shared_data=True,
        extras=("xarray", "netCDF4", "pykrige"),
    ),
    "mann": Spec(
        (
            "mann_5w_2nd_instance",
            "mann_5w_10th_instance",
            "goal_2nd_instance_at_least_82.8",
            "mann_traffic_patterns_balanced_acc",
            "traffic_patterns_chance_balanced_acc",
            "protonet_traffic_patterns_bacc_5shot",
            "maml_traffic_patterns_bacc_5shot",
        ),
        ("{stem}.png",),
        shared_data=True,
    ),
    "omniglot": Spec(
        (
            "protonet_5w1s",
            "protonet_5w5s",
            "protonet_20w1s",
            "protonet_20w5s",
            "maml_5w1s",
            "maml_20w1s",
            "train_minutes",
        ),
        ("{stem}.png",),
        shared_data=True,
    ),
    "traffic": Spec(
        (
            "p1_best_meta_mae60",
            "p1_best_baseline_mae60",
            "p1_persistence_mae60",
            "p1_goal_met",
            "p2_best_meta_mae60",
            "p2_best_baseline_mae60",
            "p2_persistence_mae60",
            "p2_goal_met",
            "p1_15min_best_meta_mae60",
            "p2_15min_best_baseline_mae60",
            "p1_flow_best_meta_mae60",
            "p1_flow_persistence_mae60",
            "worst_ratio_over_tables",
        ),
        (
            "{stem}_p1_day.png",
            "{stem}_p1_6h.png",
            "{stem}_p2_city.png",
            "{stem}_p1_15min_day.png",
            "{stem}_p1_flow_6h.png",
        ),
        shared_data=True,
        may_be_null=tuple(f"{p}_adapt_seconds_target_only" for p in ("p1", "p2", "p1_15min", "p2_15min", "p1_flow")),
    ),  # not in --quick
    "augment": Spec(
        ("augment_mse_ratio", "augment_goal_met", "augment_mse_ratio_gaussian", "augment_mse_ratio_pretrain_finetune"),
        ("{stem}.png",),
        may_be_null=("augment_mse_ratio_ci95",),
    ),  # one seed in --quick: no interval
}


def test_every_registered_benchmark_has_a_quick_check():
    assert set(SPECS) == set(BENCHMARKS) - TESTED_ELSEWHERE


def _check_value(key: str, value, may_be_null: tuple[str, ...]) -> None:
    if value is None:
        assert key in may_be_null, f"headline {key} is null"
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        assert math.isfinite(value), f"headline {key} = {value}"
    else:
        assert isinstance(value, (bool, str)), f"headline {key} = {value!r}"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SPECS))
def test_quick_benchmark(name, tmp_path, request):
    spec = SPECS[name]
    if spec.shared_data:
        request.getfixturevalue("shared_data")
    for module in spec.extras:
        pytest.importorskip(module)
    path = tmp_path / f"{name}_quick.json"
    assert main(["bench", name, "--quick", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["benchmark"] == name and result["quick"] is True
    headline = result["headline"]
    missing = [k for k in spec.headline if k not in headline]
    assert not missing, f"headline lacks {missing}"
    for key in spec.headline:
        assert headline[key] is not None, f"headline {key} is null"
    for key, value in headline.items():
        _check_value(key, value, spec.may_be_null)
    if spec.goals is not None:
        goals = result[spec.goals]
        assert goals, f"empty {spec.goals}"
        assert all(v is None or isinstance(v, bool) for v in goals.values()), goals
    for plot in spec.plots:
        png = tmp_path / plot.format(stem=path.stem)
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{png.name} missing or not a PNG"


def test_cached_result_is_reused_only_with_the_same_settings(tmp_path, capsys):
    from metamap.bench.cache import load_cached, save_cached

    path = tmp_path / "runs" / "result.json"
    settings = {"steps": 20, "hidden": (16,)}
    saved = save_cached(path, settings, {"mae": 1.5})
    assert saved == {"mae": 1.5, "settings": {"steps": 20, "hidden": [16]}}
    assert load_cached(path, {"hidden": (16,), "steps": 20}) == saved  # tuples compare as the lists JSON holds
    capsys.readouterr()
    assert load_cached(path, {"steps": 600, "hidden": (16,)}) is None
    assert "other settings (steps differ)" in capsys.readouterr().out
    assert load_cached(tmp_path / "absent.json", settings) is None


@pytest.mark.parametrize(
    "text, reason",
    [
        ('{"speedup": 21.8}', "records no settings"),  # an older, settings-less file
        ("{not json", "unreadable"),
    ],
)
def test_cached_result_without_settings_or_unreadable_is_not_reused(tmp_path, capsys, text, reason):
    from metamap.bench.cache import load_cached

    path = tmp_path / "throughput.json"
    path.write_text(text)
    assert load_cached(path, {"test": 10_000}) is None
    assert reason in capsys.readouterr().out
    assert path.read_text() == text
