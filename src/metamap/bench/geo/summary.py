"""The geo benchmark's record: headline ratios, goals, notes on the protocol, and the printed tables."""

from __future__ import annotations

from typing import Any

from metamap.bench.geo.grids import GRIDS
from metamap.bench.geo.settings import FORECAST_LEADS, SCENARIOS
from metamap.report import format_table


def make_headline(fill: dict[str, Any], forecast: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for scenario in SCENARIOS:
        methods = fill[scenario]["methods"]
        reference = min(("kriging", "kriging_anomaly"), key=lambda name: methods[name]["rmse"])
        ours = methods["diffusion_conditional"]
        out[f"rmse_ratio_vs_kriging_{scenario}"] = ours["rmse"] / methods[reference]["rmse"]
        out[f"crps_ratio_vs_kriging_{scenario}"] = ours["crps"] / methods[reference]["crps"]
        out[f"spread_skill_{scenario}"] = ours["spread_skill"]
        out[f"kriging_reference_{scenario}"] = reference
    out["speedup_vs_repaint"], out["speedup_method"] = _speedup(fill)
    for lead in (1, 6):
        diffusion = forecast["methods"]["diffusion"][str(lead)]["crps"]
        persistence = forecast["methods"]["persistence"][str(lead)]["crps"]
        out[f"forecast_crps_ratio_vs_persistence_{lead}h"] = diffusion / persistence
        out[f"forecast_crps_ratio_vs_deterministic_unet_{lead}h"] = (
            diffusion / forecast["methods"]["deterministic_unet"][str(lead)]["crps"]
        )
    return out


def _speedup(fill: dict[str, Any]) -> tuple[float | None, str | None]:
    """Peer seconds / seconds of our fastest 16-member method whose RMSE is <= the peer's, on the same fields.

    Per scenario, on the subset of fields every slow method filled; the
    smaller of the two scenarios' speedups is reported. None when the peer
    did not run or none of ours matched its RMSE.
    """
    speedups, names = [], []
    for scenario in SCENARIOS:
        methods = fill[scenario]["methods"]
        peer = methods.get("repaint_peer_subset")
        if peer is None:
            return None, None
        ours = [
            name
            for name in ("diffusion_conditional_subset", "diffusion_inpaint_subset")
            if methods[name]["rmse"] <= peer["rmse"]
        ]
        if not ours:
            return None, None
        fastest = min(ours, key=lambda name: methods[name]["seconds_median"])
        speedups.append(peer["seconds_median"] / methods[fastest]["seconds_median"])
        names.append(f"{scenario}: {fastest}")
    return min(speedups), "; ".join(names)


def check_goals(headline: dict[str, Any]) -> dict[str, bool | None]:
    def below(key: str, limit: float) -> bool | None:
        return None if headline.get(key) is None else bool(headline[key] <= limit)

    return {
        "rmse_sparse90_le_0.8x_kriging": below("rmse_ratio_vs_kriging_sparse90", 0.8),
        "crps_sparse90_le_0.8x_kriging": below("crps_ratio_vs_kriging_sparse90", 0.8),
        "rmse_blobs40_le_0.8x_kriging": below("rmse_ratio_vs_kriging_blobs40", 0.8),
        "crps_blobs40_le_0.8x_kriging": below("crps_ratio_vs_kriging_blobs40", 0.8),
        "spread_skill_sparse90_in_0.9_1.1": None
        if headline.get("spread_skill_sparse90") is None
        else bool(0.9 <= headline["spread_skill_sparse90"] <= 1.1),
        "spread_skill_blobs40_in_0.9_1.1": None
        if headline.get("spread_skill_blobs40") is None
        else bool(0.9 <= headline["spread_skill_blobs40"] <= 1.1),
        "speedup_vs_repaint_ge_5": None
        if headline.get("speedup_vs_repaint") is None
        else bool(headline["speedup_vs_repaint"] >= 5),
        "forecast_crps_1h_below_persistence": below("forecast_crps_ratio_vs_persistence_1h", 1.0 - 1e-12),
        "forecast_crps_6h_below_persistence": below("forecast_crps_ratio_vs_persistence_6h", 1.0 - 1e-12),
        **grid_goals(headline),
    }


def grid_goals(headline: dict[str, Any]) -> dict[str, bool | None]:
    """Per grid of :data:`~metamap.bench.geo.grids.GRIDS`: RMSE <= 0.8x the better kriging in both scenarios,
    spread/skill in 0.9-1.1 at sparse90; on every grid never worse than kriging."""
    out: dict[str, bool | None] = {}
    for grid in GRIDS:
        for scenario in SCENARIOS:
            ratio = headline.get(f"{grid}_rmse_ratio_vs_kriging_{scenario}")
            out[f"{grid}_rmse_{scenario}_le_0.8x_kriging"] = None if ratio is None else bool(ratio <= 0.8)
        spread = headline.get(f"{grid}_spread_skill_sparse90")
        out[f"{grid}_spread_skill_sparse90_in_0.9_1.1"] = None if spread is None else bool(0.9 <= spread <= 1.1)
    worst = headline.get("worst_rmse_ratio_vs_kriging")
    out["never_worse_than_kriging"] = None if worst is None else bool(worst <= 1.0)
    return out


def print_tables(result: dict[str, Any]) -> None:
    for scenario in SCENARIOS:
        methods = result["fill"][scenario]["methods"]
        rows = [
            [name, m["rmse"], m["crps"], m.get("spread_skill", "-"), m["seconds_median"], m["n_fields"]]
            for name, m in methods.items()
        ]
        print(f"\ngap-filling {scenario} (K, missing pixels)")
        print(format_table(["method", "RMSE", "CRPS", "spread/skill", "s/field", "fields"], rows))
    rows = [
        [name, *[by_lead[str(lead)]["crps"] for lead in FORECAST_LEADS]]
        for name, by_lead in result["forecast"]["methods"].items()
    ]
    print("\nforecast CRPS (K)")
    print(format_table(["method", *[f"+{lead} h" for lead in FORECAST_LEADS]], rows))
    print("\nheadline")
    print(format_table(["key", "value"], [[k, v] for k, v in result["headline"].items()]))


NOTES = {
    "split": "train (and standardize) on 2019-03-01..24, test on 03-25..31; no test data used for any choice",
    "training_budget": "each model has a wall-clock cap (settings.*_budget = (max steps, max seconds)); full run: "
    "fill 11 min, generate 7 min, RePaint peer 7 min (the fill model's batches: the same conditioning "
    "channels as extra input channels and the same residual target, schedule and lr), "
    "forecast 7 min, deterministic UNet <= 4 min and at most the forecast model's steps: "
    "36 min of training in all, on one CPU core shared with other jobs (2 cores, 4 users); "
    "'training' and 'peer' give the steps done",
    "models": "UNet2d base 16 (168k parameters; base 32 trained too few steps in the wall budget on the shared "
    "CPU), mults (1, 2, 2), GroupNorm; cosine schedule, 1000 steps, v-prediction, Adam 5e-4, "
    "EMA 0.995, batch 16 whole fields (33 x 49); conditioning: fill = observed mask, observed values "
    "(0 where missing), kriging estimate and std, normalized latitude and longitude (target: the residual "
    "from the kriging estimate); forecast = previous 3 fields, lead/6, "
    "latitude, longitude (one model for all leads); generate = latitude and longitude only. The ERA5 "
    "file has no land-sea mask, so none is used.",
    "fill_metrics": "on the missing pixels, cos-latitude weighted, mean over test fields (95% CI in *_ci95); "
    "ensembles: RMSE of the ensemble mean, fair CRPS, spread/skill with the (M+1)/M correction; "
    "deterministic baselines: CRPS = MAE; kriging: closed-form Gaussian CRPS from its predictive "
    "variance",
    "kriging": "PyKrige OrdinaryKriging on an equirectangular plane; variogram model (exponential | spherical | "
    "gaussian) chosen per scenario by RMSE on training fields, its parameters fitted per field; "
    "'kriging' on the raw field, 'kriging_anomaly' on the anomaly from the seasonal training climatology; "
    "the headline ratios use the better (lower RMSE) of the two; the grids part scores every baseline with "
    "metamap geo evaluate's code (metamap.geo.evaluation), variograms chosen on the validation days",
    "speedup_vs_repaint": "median wall seconds per field of the RePaint peer's 16-member ensemble divided by that "
    "of our fastest 16-member method (conditional or training-free inpainting) whose "
    "ensemble-mean RMSE on the same subset of fields is <= the peer's; the smaller of the "
    "two scenarios; null if the peer did not run or no method of ours matched its RMSE",
    "sampling": "conditional fill, forecast and generation: DPM-Solver++(2M) 20 steps; training-free inpainting: "
    "DDPM 25 steps x 4 RePaint resamplings (100 network evaluations); RePaint peer: RePaintScheduler "
    "with 50 steps, jump_length 10, jump_n_sample 4 (about 200 evaluations; the RePaint pipeline's "
    "default 250 / 10 / 10 would cost about 2500, too slow here); the slow methods (inpainting, peer) "
    "fill 4 of the test fields of each scenario, evenly spread over the 24 in time order, and the "
    "conditional model is scored on the same 4 ('*_subset') for the side-by-side comparison",
    "forecast": "one diffusion model for leads 1..6 h (lead as a conditioning channel); 16 members; scores over "
    "the whole grid; persistence and the deterministic UNet are scored with CRPS = MAE",
    "generation": "64 samples vs all 168 test fields; 'training_fields' is the same statistic for 64 random "
    "training fields, the level a perfect model of the training period would reach",
}
