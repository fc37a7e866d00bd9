"""``metamap bench samplers --quick``: the JSON holds finite headline figures, DPM-Solver++ beats DDPM."""

from __future__ import annotations

import json
import math

from metamap.bench.samplers import run

HEADLINE = (
    "dpmpp_std_rel_error_10steps",
    "dpmpp_std_rel_error_25steps",
    "ddim_std_rel_error_25steps",
    "ddpm_std_rel_error_25steps",
    "inpaint_dpmpp_20x1_std_rel_error",
)


def test_quick_samplers_benchmark(tmp_path):
    path = tmp_path / "s.json"
    run(quick=True, json_path=path)
    result = json.loads(path.read_text())
    assert result["benchmark"] == "samplers" and result["quick"] is True
    headline = result["headline"]
    assert set(HEADLINE) <= set(headline)
    assert all(isinstance(headline[k], float) and math.isfinite(headline[k]) for k in HEADLINE)
    assert abs(headline["dpmpp_std_rel_error_25steps"]) < abs(headline["ddpm_std_rel_error_25steps"])
    assert path.with_suffix(".png").is_file()
