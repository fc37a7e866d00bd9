"""``metamap demo``: few-shot forecasting of new traffic sensors, in about 2 minutes on 2 cores.

A short version of protocol P1 of ``metamap bench traffic`` on the LA week
bundled with the package (see :mod:`metamap.traffic.bundled`): 70% of the
207 sensors meta-train over days 1-5; each of the other 62 adapts on its own
day 5 and forecasts days 6-7 one hour ahead. Every method of the issue's
table (MAML, first-order MAML, Reptile, Meta-SGD, ANIL; persistence,
historical average, target-only network and ridge, pretrain, pretrain +
fine-tune) with the graph-aware model, one seed and fewer meta-steps than
the benchmark. Prints the table and saves plots.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from metamap.report import write_json
from metamap.traffic import plots
from metamap.traffic.bundled import load_bundled_la
from metamap.traffic.experiment import ExperimentConfig, compare, results_table, train_methods
from metamap.traffic.protocols import new_sensors

DEMO = ExperimentConfig(steps=300)
QUICK = ExperimentConfig(steps=10, hidden=(16,), methods=("maml", "persistence", "historical_average", "pretrain"))
SHOWN = ("maml", "pretrain_finetune", "historical_average", "persistence")


def run_demo(out: Path, quick: bool = False, device: torch.device | str = "cpu") -> dict:
    """Run the demo into folder ``out``, the networks on ``device``; returns ``{method: errors by horizon}``
    for the day-5 support."""
    torch.set_num_threads(1)  # small matrices: extra threads only contend
    out = Path(out)
    config = QUICK if quick else DEMO
    data = load_bundled_la()
    setup = new_sensors(data, config)
    config = setup.config
    target = setup.targets["day"]
    print(
        f"LA week: {data.n_sensors} sensors; meta-training on {data.n_sensors - len(target.nodes)} over days 1-5, "
        f"{len(target.nodes)} new sensors adapt on day 5 and forecast days 6-7"
    )
    trained = train_methods(setup.family, config, progress=True, device=device)
    results = compare(trained, {"day": target}, {"day": setup.validations["day"]}, config, device)["day"]
    print(f"\nnew sensors (P1, one seed; networks correct {config.base}): masked errors in mph")
    print(results_table(results).to_text())
    horizon_plot = plots.error_by_horizon(
        {m: r.mae_by_step for m, r in results.items()},
        out / "error_by_horizon.png",
        title="new LA sensors: error by horizon",
    )
    forecast_plot = plots.target_forecasts(
        target, {m: results[m].prediction for m in SHOWN if m in results}, torch.arange(3), out / "forecasts.png"
    )
    summary = {m: r.summary() for m, r in results.items()}
    write_json(out / "demo.json", {"config": asdict(config), "results": summary})
    print(f"\nplots: {horizon_plot}, {forecast_plot}\nresults: {out / 'demo.json'}")
    return {m: r.errors for m, r in results.items()}
