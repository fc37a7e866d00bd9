"""Scenarios from profiles, the learned dispatch model (fit, save/load, reproducibility), regime episodes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metamap.energy.dcopf import load_case
from metamap.energy.feasibility import guaranteed_dispatch, optimality_gap
from metamap.energy.highs import WarmDCOPF
from metamap.energy.learned import DispatchModel, RegimeData, fit_scalers, regime_episode, standardized, train_dispatch
from metamap.energy.scenarios import assign_types, load_profiles, sample_loads, synthetic_profiles
from metamap.errors import CheckpointError, ConfigError, DataError
from metamap.learners import make_learner
from metamap.nn import MLP


@pytest.fixture(scope="module")
def solved():
    torch.set_num_threads(1)
    case = load_case("case30", line_limits="base")
    profiles = synthetic_profiles()
    types = assign_types(case, profiles, seed=0)
    pd = sample_loads(case, profiles, types, np.arange(profiles.values.shape[0]), 300, np.random.default_rng(0))
    pg, cost, _, status = WarmDCOPF(case).solve_many(pd)
    ok = status == "optimal"
    return case, profiles, types, pd[ok], pg[ok], cost[ok]


def test_regime_windows_and_scenarios(solved):
    case, profiles, types, *_ = solved
    steps = profiles.steps("winter", "morning")
    assert steps.size > 0
    assert np.isin(profiles.month[steps], (12, 1, 2)).all()
    assert ((profiles.hour[steps] >= 6) & (profiles.hour[steps] < 12)).all()
    pd = sample_loads(case, profiles, types, steps, 5, np.random.default_rng(1))
    assert pd.shape == (5, case.n_load) and (pd >= 0).all()
    again = sample_loads(case, profiles, types, steps, 5, np.random.default_rng(1))
    np.testing.assert_array_equal(pd, again)
    with pytest.raises(ConfigError, match="unknown season"):
        profiles.steps("monsoon", "night")


def test_profile_cache_round_trip(tmp_path):
    profiles = synthetic_profiles(n_days=2)
    cache = tmp_path / "profiles.npz"
    np.savez(cache, names=np.array(profiles.names), values=profiles.values, month=profiles.month, hour=profiles.hour)
    loaded = load_profiles(cache)
    assert loaded.names == profiles.names
    np.testing.assert_array_equal(loaded.values, profiles.values)


def test_learned_dispatch_is_close_and_reproducible(solved, tmp_path):
    case, _, _, pd, pg, cost = solved
    train, test = slice(0, 200), slice(200, None)
    model = train_dispatch(pd[train], pg[train], hidden=(32,), steps=400, seed=3)
    again = train_dispatch(pd[train], pg[train], hidden=(32,), steps=400, seed=3)
    np.testing.assert_array_equal(model.predict(pd[test]), again.predict(pd[test]))
    result = guaranteed_dispatch(case, pd[test], model.predict, WarmDCOPF(case))
    assert result.n_violations == 0
    gap = optimality_gap(result.cost, cost[test])
    assert (gap > -1e-7).all()
    assert gap.mean() < 0.01  # within 1% on case30 after 400 steps
    model.save(tmp_path / "run", {"case": "case30"})
    loaded, info = DispatchModel.load(tmp_path / "run")
    assert info["case"] == "case30" and info["hidden"] == [32]
    np.testing.assert_allclose(loaded.predict(pd[test]), model.predict(pd[test]), rtol=1e-6)


def test_missing_model_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="not a readable energy model"):
        DispatchModel.load(tmp_path)


def test_scalers_refuse_infeasible_rows():
    with pytest.raises(DataError, match="training dispatches: 3 NaN/inf value"):
        fit_scalers(np.ones((3, 2)), np.full((3, 1), np.nan))


def test_scalers_are_per_column_with_spreads_floored_at_one_mw():
    pd = np.array([[10.0, 5.0], [30.0, 5.2]])
    pg = np.array([[1.0], [5.0]])
    loads, dispatch = fit_scalers(pd, pg)
    np.testing.assert_allclose(loads.mean_, [20.0, 5.1])
    np.testing.assert_allclose(loads.scale_, [10.0, 1.0])
    np.testing.assert_allclose(dispatch.scale_, [2.0])


def test_regime_episodes_feed_the_meta_learners(solved):
    case, _, _, pd, pg, cost = solved
    regimes = [
        RegimeData(f"r{k}", pd[k * 60 : (k + 1) * 60], pg[k * 60 : (k + 1) * 60], cost[k * 60 : (k + 1) * 60])
        for k in range(3)
    ]
    scalers = fit_scalers(pd, pg)
    episode = regime_episode(regimes, scalers, 10, 20, np.random.default_rng(0))
    assert episode.x_support.shape == (3, 10, case.n_load)
    assert episode.y_query.shape == (3, 20, case.n_gen)
    np.testing.assert_allclose(
        episode.x_query[1].numpy(),
        standardized(scalers[0], regimes[1].pd[episode.meta["index"][1, 10:].numpy()]).numpy(),
    )
    learner = make_learner("maml", MLP(case.n_load, [16], case.n_gen), inner_steps=1, inner_lr=0.01)
    loss = learner.meta_loss(episode)
    assert torch.isfinite(loss)
    with pytest.raises(DataError, match="need 100"):
        regime_episode(regimes, scalers, 50, 50, np.random.default_rng(0))
