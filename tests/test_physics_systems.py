"""Physical systems against closed forms, unphysical parameters, least-squares recovery, task families."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metamap.errors import ConfigError, DataError
from metamap.physics.family import SystemFamily, grid_points
from metamap.physics.fit import fit_from_starts, least_squares_fit
from metamap.physics.systems import SYSTEMS, get_system, heat_initial
from metamap.tasks.family import make_generator


def test_undamped_oscillator_is_a_cosine():
    t = np.linspace(0, 6, 97)
    x = SYSTEMS["oscillator"].simulate([1.7, 0.0, 0.0, 1.0], t)[:, 0]
    assert x == pytest.approx(np.cos(1.7 * t), abs=1e-5)


def test_undamped_driven_oscillator_matches_the_closed_form():
    omega0, force, omega_d = 1.5, 0.8, 0.7
    t = np.linspace(0, 6, 61)[::-1]  # any order of times
    x = SYSTEMS["oscillator"].simulate([omega0, 0.0, force, omega_d], t)[:, 0]
    amplitude = force / (omega0**2 - omega_d**2)
    expected = (1 - amplitude) * np.cos(omega0 * t) + amplitude * np.cos(omega_d * t)
    assert x == pytest.approx(expected, abs=1e-5)


def test_heat_fourier_modes_decay_as_exp_minus_kappa_n_pi_squared_t():
    kappa = 0.1
    positions = np.linspace(0, 1, 65)[1:-1]  # the method-of-lines grid points
    for time in (0.0, 0.3, 1.0):
        t = np.full_like(positions, time)
        u = SYSTEMS["heat"].simulate([kappa], t, positions)[:, 0]
        expected = np.exp(-kappa * np.pi**2 * time) * np.sin(np.pi * positions) + 0.5 * np.exp(
            -kappa * 9 * np.pi**2 * time
        ) * np.sin(3 * np.pi * positions)
        assert u == pytest.approx(expected, abs=2e-4)
    assert heat_initial(np.array([0.5]))[0] == pytest.approx(0.5)


def test_lotka_volterra_conserves_its_first_integral():
    alpha, beta, gamma, delta = 1.1, 0.9, 0.8, 1.2
    states = SYSTEMS["lotka_volterra"].simulate([alpha, beta, gamma, delta], np.linspace(0, 10, 50))
    x, y = states.T
    invariant = delta * x - gamma * np.log(x) + beta * y - alpha * np.log(y)
    assert np.ptp(invariant) < 1e-5


def test_small_angle_pendulum_oscillates_at_sqrt_g_over_l():
    system = SYSTEMS["pendulum"]
    t = np.linspace(0, 4, 401)
    theta = system.simulate([1.0, 0.0], t)[:, 0]
    assert theta.max() == pytest.approx(1.0, abs=1e-6)  # no damping: the amplitude stays
    # a large swing (1 rad) is slower than the small-angle period 2 pi sqrt(L/g)
    first_min = t[np.argmin(theta[t < 1.5])]
    assert first_min > np.pi * np.sqrt(1.0 / 9.81)


@pytest.mark.parametrize(
    "name, params, word",
    [
        ("pendulum", [-1.0, 0.1], "L=-1"),
        ("heat", [-0.05], "kappa=-0.05"),
        ("heat", [0.0], "kappa=0"),
        ("oscillator", [1.0, -0.1, 0.5, 1.0], "zeta=-0.1"),
        ("lotka_volterra", [1.0, np.nan, 1.0, 1.0], "beta=nan"),
    ],
)
def test_unphysical_parameters_raise(name, params, word):
    with pytest.raises(DataError, match=f"unphysical parameter.*{word}"):
        SYSTEMS[name].simulate(params, np.array([0.0, 0.5]), np.array([0.5, 0.5]) if name == "heat" else None)


def test_unknown_system_raises():
    with pytest.raises(ConfigError, match="oscillator"):
        get_system("double_pendulum")


@pytest.mark.parametrize(
    "name, truth",
    [
        ("oscillator", [1.4, 0.12, 0.6, 1.3]),
        ("lotka_volterra", [0.9, 1.1, 1.2, 0.8]),
        ("heat", [0.07]),
        ("pendulum", [1.3, 0.2]),
    ],
)
def test_least_squares_recovers_parameters_from_noise_free_data(name, truth):
    system = SYSTEMS[name]
    rng = np.random.default_rng(0)
    t = np.sort(rng.random(25) * system.t_max)
    x = rng.random(25) if system.n_in == 2 else None
    y = system.simulate(truth, t, x)
    fitted = least_squares_fit(system, t, y, x, n_starts=3, seed=1)
    assert fitted == pytest.approx(truth, rel=1e-3)


def test_a_start_near_the_truth_needs_fewer_evaluations_than_random_starts():
    system = SYSTEMS["pendulum"]
    t = np.linspace(0.0, system.t_max, 20)
    truth = np.array([1.3, 0.2])
    y = system.simulate(truth, t)
    near, near_calls = fit_from_starts(system, t, y, None, truth[None] * 1.05)
    far, far_calls = fit_from_starts(system, t, y, None, system.sample(4, np.random.default_rng(0)))
    assert near == pytest.approx(truth, rel=1e-3) and far == pytest.approx(truth, rel=1e-3)
    assert 0 < near_calls < far_calls / 2  # every simulation counted, Jacobian columns included


def test_family_is_reproducible_splits_differ_and_dense_queries_are_the_truth():
    family = SystemFamily(SYSTEMS["oscillator"], k_shot=10, noise=0.05, n_systems={"train": 20, "val": 5, "test": 5})
    a, b = family.sample(4, make_generator(1)), family.sample(4, make_generator(1))
    assert torch.equal(a.y_support, b.y_support) and a.x_support.shape == (4, 10, 1)
    assert not np.allclose(family.bank[0][:5], family.split("test").bank[0])
    dense = SystemFamily(SYSTEMS["oscillator"], dense=True, n_systems={"train": 20, "val": 5, "test": 5})
    ep = dense.split("test").sample(2, make_generator(0))
    t, _ = grid_points(dense.system)
    for task in range(2):
        truth = dense.system.simulate(ep.meta["params"][task].numpy(), t)
        assert ep.y_query[task].numpy() == pytest.approx(truth, abs=1e-5)
        index = ep.meta["support_index"][task].numpy()
        noise = ep.y_support[task].numpy() - truth[index]
        assert 0 < np.abs(noise).max() < 0.05 * 5
