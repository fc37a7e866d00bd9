"""The traffic benchmark's table: means over seeds, a diverged method reported as such, the headline's best."""

from __future__ import annotations

from metamap.bench import traffic


def _summary(mae: float | None) -> dict:
    errors = {h: {"mae": mae, "rmse": None if mae is None else 2 * mae, "mape": None} for h in traffic.HORIZONS}
    return {"errors": errors, "mae_by_step": [mae] * 4, "adapt_seconds": 1.0, "train_seconds": 2.0}


def test_a_method_that_diverges_on_one_seed_is_reported_and_never_chosen():
    jobs = {
        ("p1", "node", seed): {"targets": {"day": {"maml": _summary(m), "reptile": _summary(r)}}}
        for seed, m, r in ((0, 4.0, 1.0), (1, 5.0, None))
    }
    table = traffic._aggregate(jobs)
    cells = table["p1/day"]
    assert cells["node/maml"]["mae_1h_mean"] == 4.5 and cells["node/maml"]["n_seeds"] == 2
    assert cells["node/reptile"]["diverged_seeds"] == 1 and "mae_1h_mean" not in cells["node/reptile"]
    assert traffic._best(cells, ("maml", "reptile")) == ("node/maml", 4.5)
