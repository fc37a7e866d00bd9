"""Bright-to-faint photo-z tasks: the ordered split never lets a faint galaxy into training, adaptation
learns a known faint-end miscalibration, and the command refuses too few faint galaxies in one line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from metamap.astro.catalogue import catalogue_from_frame
from metamap.astro.photoz import LearnerMethod, RegionData, ratio_of_means, region_data, run_fewshot
from metamap.astro.tasks import magnitude_bins, split_ordered_groups
from metamap.cli import main
from metamap.errors import DataError
from metamap.learners import make_learner
from metamap.nn import MLP
from metamap.tasks.episode import Episode


def _faint_catalogue(n: int = 1000, seed: int = 0, faint_gain: float = 0.5) -> pd.DataFrame:
    """Galaxies with r uniform in [15, 18] and redshift 0.05 + 0.25 c for a true colour c in [0, 1].

    The measured colours are the true ones times a gain: near 1 (0.9-1.1, one per 0.3 mag) for r < 17,
    ``faint_gain`` beyond. A model of the bright galaxies alone thus misreads every faint one by a
    redshift-dependent amount (not a constant shift), which K labelled faint galaxies reveal.
    """
    rng = np.random.default_rng(seed)
    r = rng.uniform(15, 18, n)
    c = rng.uniform(0, 1, n)
    bright_gains = rng.uniform(0.9, 1.1, 10)
    gain = np.where(r < 17, bright_gains[np.minimum(((r - 15) / 0.3).astype(int), 9)], faint_gain)
    colours = gain[:, None] * c[:, None] * np.array([1.0, 0.8, 0.5, 0.3]) + 0.005 * rng.standard_normal((n, 4))
    g = r + colours[:, 1]
    u = g + colours[:, 0]
    i = r - colours[:, 2]
    z_band = i - colours[:, 3]
    return pd.DataFrame(
        {
            "ra": rng.uniform(0, 360, n),
            "dec": rng.uniform(-10, 10, n),
            "u": u,
            "g": g,
            "r": r,
            "i": i,
            "z": z_band,
            "class": "GALAXY",
            "redshift": 0.05 + 0.25 * c + 0.002 * rng.standard_normal(n),
        }
    )


def test_ordered_split_puts_the_faintest_bins_in_test_and_none_in_training():
    rng = np.random.default_rng(1)
    mag = rng.uniform(14, 19, 1000)
    valid = np.ones_like(mag, bool)
    valid[:7] = False  # no r: belongs to no split
    ids = magnitude_bins(mag, valid, 10)
    groups = split_ordered_groups(ids, 50, (0.55, 0.2, 0.25))
    assert [len(groups[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    rows = {s: np.concatenate(groups[s]) for s in ("train", "val", "test")}
    assert mag[rows["train"]].max() < mag[rows["val"]].min() <= mag[rows["val"]].max() < mag[rows["test"]].min()
    assert groups["rest"][0].size == 0
    assert not set(range(7)) & set(np.concatenate(list(rows.values())).tolist())
    assert sum(r.size for r in rows.values()) == 993
    with pytest.raises(DataError, match=r"must have >= 150 objects to be a task; 10 of 10 have fewer"):
        split_ordered_groups(ids, 150, (0.55, 0.2, 0.25))


def test_faint_region_data_standardizes_and_trains_on_bright_galaxies_only():
    frame = _faint_catalogue()
    data = region_data(catalogue_from_frame(frame), min_cell=50, group_by="faint", n_bins=10)
    source = data.source_rows()
    assert sorted(source.tolist()) == sorted(np.concatenate(data.groups["train"]).tolist())
    assert data.r_range["train"][1] < data.r_range["val"][0] and data.r_range["val"][1] < data.r_range["test"][0]
    assert frame["r"].to_numpy()[source].max() == pytest.approx(data.r_range["train"][1])
    assert data.z_mean == pytest.approx(frame["redshift"].to_numpy()[source].mean())
    r_scaled = data.x[source, 2]  # standardized with the bright galaxies' mean and deviation alone
    assert abs(r_scaled.mean()) < 1e-4 and r_scaled.std(ddof=1) == pytest.approx(1.0, abs=1e-4)


def test_ratio_of_means_and_its_paired_interval():
    ratio, (low, high) = ratio_of_means([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])
    assert ratio == pytest.approx(0.5) and low == pytest.approx(0.5) and high == pytest.approx(0.5)
    ratio, (low, high) = ratio_of_means([1.0, 3.0, 2.0, 2.0], [2.0, 2.0, 2.0, 2.0])
    assert ratio == pytest.approx(1.0) and low < 1.0 < high


def test_a_task_whose_adaptation_diverges_falls_back_to_the_unadapted_network():
    torch.manual_seed(0)
    learner = make_learner("maml", MLP(14, [16], 1), inner_steps=5, inner_lr=0.05)
    data = RegionData(np.zeros((0, 14), np.float32), np.zeros(0), {}, 0.0, 1.0, {})
    x, y = torch.randn(2, 20, 14), torch.randn(2, 20, 1)
    x[1, 0, 2] = 1e4  # task 1 holds one galaxy with a wild r magnitude
    episode = Episode(x, y, x, y)
    method, unadapted = LearnerMethod(data, learner), LearnerMethod(data, learner)
    method.adapt(episode, steps=10)
    unadapted.adapt(episode, steps=0)
    assert method.guarded.kept.tolist() == [True, False] and method.fallbacks == 1
    z, z0 = method.predict(episode), unadapted.predict(episode)
    assert np.isfinite(z).all() and np.allclose(z[1], z0[1]) and not np.allclose(z[0], z0[0])


@pytest.mark.slow
def test_adaptation_learns_the_faint_miscalibration_the_global_model_cannot():
    cat = catalogue_from_frame(_faint_catalogue(n=1200))
    result = run_fewshot(
        cat,
        shots=(20,),
        steps=60,
        episodes=12,
        val_episodes=6,
        min_cell=50,
        learner_names=("maml",),
        quick=True,
        progress=False,
        group_by="faint",
        n_bins=12,
    )
    k20 = result["by_k"]["20"]
    glob = k20["global_gbm"]["sigma_nmad"]
    # bright gains average ~1, faint 0.5: unadapted, dz spreads by about 0.25 * c * 0.5 / (1 + z)
    assert glob > 0.02
    # a constant shift cannot undo a gain, refitting on the K faint galaxies can
    assert k20["global_gbm_offset"]["sigma_nmad"] > 0.8 * glob
    assert k20["pretrain_finetune"]["sigma_nmad_ratio_vs_global"] < 0.5
    assert k20["gbm_support"]["sigma_nmad"] < 0.7 * glob
    assert result["r_range"]["test"][0] > result["r_range"]["train"][1]


def test_photoz_faint_refuses_too_few_faint_galaxies(tmp_path, capsys):
    data = tmp_path / "cat.csv"
    _faint_catalogue(n=300).to_csv(data, index=False)
    args = ["astro", "photoz", "--data", str(data), "--out", str(tmp_path / "o"), "--group-by", "faint"]
    assert main([*args, "--shots", "20", "--min-cell", "40", "--bins", "10"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("metamap: error: ") and "\n" not in err
    assert "every group must have >= 40 objects to be a task; 10 of 10 have fewer (smallest 30)" in err
    assert main([*args, "--bins", "2"]) == 2
    assert "--bins: magnitude tasks need >= 3 bins" in capsys.readouterr().err
