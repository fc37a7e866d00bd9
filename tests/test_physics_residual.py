"""The misspecified equation and the residual tasks built on its fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metamap.physics.family import SystemFamily, grid_points
from metamap.physics.residual import ResidualFamily, misspecified_fits, residual_episode
from metamap.physics.systems import SMALL_ANGLE_PENDULUM, SYSTEMS
from metamap.tasks.family import make_generator


def test_small_angle_equation_is_the_cosine_and_departs_from_the_pendulum_at_one_radian():
    t = np.linspace(0.0, 4.0, 50)
    length = 1.2
    linear = SMALL_ANGLE_PENDULUM.simulate([length, 0.0], t)[:, 0]
    assert linear == pytest.approx(np.cos(np.sqrt(9.81 / length) * t), abs=1e-5)
    assert np.abs(SYSTEMS["pendulum"].simulate([length, 0.0], t)[:, 0] - linear).max() > 0.2


def test_residual_tasks_add_back_to_the_data():
    family = SystemFamily(SYSTEMS["pendulum"], k_shot=10, n_systems={"train": 4, "val": 3, "test": 3}, dense=True)
    episode, fits = misspecified_fits(family, "train", 4, n_starts=1, seed=0, progress=False)
    residual = residual_episode(episode, fits)
    trajectories = torch.as_tensor(fits.trajectories, dtype=torch.float32)
    assert torch.allclose(residual.y_query + trajectories, episode.y_query, atol=1e-6)
    t, _ = grid_points(family.system)
    for task in range(4):  # the support residual is the observation minus the fit simulated at its times
        index = episode.meta["support_index"][task].numpy()
        fit_at_support = SMALL_ANGLE_PENDULUM.simulate(fits.params[task], t[index])
        expected = episode.y_support[task].numpy() - fit_at_support
        assert residual.y_support[task].numpy() == pytest.approx(expected, abs=1e-4)
    tasks = ResidualFamily(family.system, {"train": residual}).sample(6, make_generator(0))
    assert tasks.y_query.shape == (6, t.size, 1) and tasks.y_support.shape == (6, 10, 1)
