"""The worked example of docs/architecture.md (a new domain's method comparison) runs and is right."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import torch

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "new_domain.py"


def _example():
    spec = importlib.util.spec_from_file_location("new_domain_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_classic_recovers_a_noise_free_decay_curve_exactly():
    example = _example()
    t = torch.linspace(0, 2, 5).reshape(1, 5, 1)
    y = 0.8 * torch.exp(-1.3 * t)
    method = example.LogLinear()
    method.adapt((t, y), penalty=0.0)
    x = torch.tensor([[[0.5], [3.0]]])
    torch.testing.assert_close(method.predict(x), 0.8 * torch.exp(-1.3 * x), rtol=1e-4, atol=1e-6)


def test_the_comparison_tunes_both_methods_on_validation_and_tables_them():
    table = _example().compare(steps=20)
    rows = {row.method: row for row in table.rows}
    assert set(rows) == {"log-linear least squares", "maml"}
    assert all(math.isfinite(row.values["test_mse"]) for row in rows.values())
    # 1% multiplicative noise on amplitudes of order 1: the exact model class leaves an MSE of order 1e-4
    assert rows["log-linear least squares"].values["test_mse"] < 1e-3
    assert "penalty" in rows["log-linear least squares"].setting and "steps" in rows["maml"].setting
