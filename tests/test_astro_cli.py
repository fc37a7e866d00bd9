"""``metamap astro photoz | classify`` end to end on a tiny synthetic catalogue, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from metamap.cli import main


def _catalogue(path, n_per_class: int = 120) -> None:
    """Three classes with distinct colours; galaxies' g-r grows with redshift; spread over 6 sky cells."""
    rng = np.random.default_rng(0)
    rows = []
    for name, offset in (("STAR", 0.0), ("GALAXY", 0.8), ("QSO", -0.6)):
        z = rng.uniform(0.02, 0.3, n_per_class) if name == "GALAXY" else np.zeros(n_per_class)
        r = rng.uniform(16, 18, n_per_class)
        colours = offset + 2 * z[:, None] + 0.05 * rng.standard_normal((n_per_class, 4))
        mags = np.column_stack(
            [
                r + colours[:, 0] + colours[:, 1],
                r + colours[:, 1],
                r,
                r - colours[:, 2],
                r - colours[:, 2] - colours[:, 3],
            ]
        )
        for i in range(n_per_class):
            rows.append(
                {
                    "ra": rng.uniform(0, 180),
                    "dec": rng.uniform(0, 29),
                    **dict(zip("ugriz", mags[i])),
                    "class": name,
                    "redshift": z[i],
                }
            )
    pd.DataFrame(rows).to_csv(path, index=False)


@pytest.mark.slow
def test_photoz_and_classify_commands(tmp_path, capsys):
    data = tmp_path / "cat.csv"
    _catalogue(data)
    out = tmp_path / "photoz"
    code = main(
        [
            "astro",
            "photoz",
            "--data",
            str(data),
            "--out",
            str(out),
            "--shots",
            "5",
            "10",
            "--cell-deg",
            "30",
            "--min-cell",
            "15",
            "--steps",
            "3",
            "--episodes",
            "6",
            "--quick",
            "--learners",
            "maml",
        ]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["fewshot"]["by_k"]) == {"5", "10"}
    assert metrics["all_data"]["chosen_metrics"]["sigma_nmad"] > 0
    assert (out / "photoz.png").stat().st_size > 0
    out = tmp_path / "photoz_mag"
    assert (
        main(
            [
                "astro",
                "photoz",
                "--data",
                str(data),
                "--out",
                str(out),
                "--shots",
                "5",
                "--group-by",
                "magnitude",
                "--bins",
                "6",
                "--min-cell",
                "15",
                "--steps",
                "2",
                "--episodes",
                "3",
                "--quick",
                "--learners",
                "anil",
            ]
        )
        == 0
    )
    assert "bins of r magnitude" in json.loads((out / "metrics.json").read_text())["fewshot"]["protocol"]
    out = tmp_path / "classify"
    assert (
        main(
            [
                "astro",
                "classify",
                "--data",
                str(data),
                "--out",
                str(out),
                "--shots",
                "1",
                "5",
                "--steps",
                "3",
                "--episodes",
                "5",
                "--cell-deg",
                "30",
            ]
        )
        == 0
    )
    accuracy = json.loads((out / "metrics.json").read_text())["by_k"]["5"]["protonet"]["mean"]
    assert 0 <= accuracy <= 1
    assert "5-shot accuracy" in capsys.readouterr().out


def test_catalogue_without_needed_columns_is_a_clear_error(tmp_path, capsys):
    data = tmp_path / "cat.csv"
    pd.DataFrame({"ra": [1.0], "dec": [2.0], "u": [18.0], "g": [17.0]}).to_csv(data, index=False)
    assert main(["astro", "classify", "--data", str(data), "--out", str(tmp_path / "o")]) == 2
    assert "no magnitude column for band(s) ['r', 'i', 'z']" in capsys.readouterr().err
