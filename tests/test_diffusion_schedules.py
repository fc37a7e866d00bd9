"""Noise schedules: closed-form moments against the forward chain, posterior against Bayes' rule, conversions."""

from __future__ import annotations

import math

import pytest
import torch

from metamap.diffusion.schedules import NoiseSchedule
from metamap.errors import ConfigError, ShapeError

SCHEDULES = {
    "linear": lambda n: NoiseSchedule.linear(n, 1e-4, 0.02 * 1000 / n),
    "cosine": lambda n: NoiseSchedule.cosine(n),
}


@pytest.mark.parametrize("kind", SCHEDULES)
def test_alphas_cumprod_is_the_explicit_product(kind):
    schedule = SCHEDULES[kind](1000)
    product, expected = 1.0, []
    for beta in schedule.betas.tolist():
        product *= 1.0 - beta
        expected.append(product)
    assert torch.allclose(schedule.alphas_cumprod, torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=0)


def test_linear_and_cosine_closed_forms():
    linear = NoiseSchedule.linear(1000)
    assert linear.betas[0].item() == pytest.approx(1e-4) and linear.betas[-1].item() == pytest.approx(0.02)
    cosine = NoiseSchedule.cosine(1000, s=0.008)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for k in (0, 10, 500, 900):
        assert cosine.alphas_cumprod[k].item() == pytest.approx(f(k + 1) / f(0), rel=1e-9)


@pytest.mark.parametrize("kind", SCHEDULES)
def test_q_moments_match_a_monte_carlo_forward_chain(kind):
    schedule = SCHEDULES[kind](50)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.tensor([1.5, -0.7, 0.0], dtype=torch.float64)
    x = x0.repeat(40_000, 1)
    checks = (0, 9, 24, 49)
    for k, beta in enumerate(schedule.betas.tolist()):
        x = math.sqrt(1 - beta) * x + math.sqrt(beta) * torch.randn(x.shape, generator=gen, dtype=torch.float64)
        if k in checks:
            mean, var = schedule.q_moments(x0.float().reshape(1, 3, 1, 1), torch.tensor([k]))
            se_mean = math.sqrt(var.item() / len(x))
            assert torch.allclose(x.mean(0).float(), mean.flatten(), atol=5 * se_mean)
            assert torch.allclose(x.var(0).float(), var.flatten().expand(3), rtol=0.03)


def test_q_sample_is_mean_plus_scaled_noise():
    schedule = NoiseSchedule.cosine(100)
    x0, noise = torch.randn(4, 2, 3, 5), torch.randn(4, 2, 3, 5)
    t = torch.tensor([0, 10, 50, 99])
    abar = schedule.alphas_cumprod[t].float().reshape(-1, 1, 1, 1)
    assert torch.allclose(schedule.q_sample(x0, t, noise), abar.sqrt() * x0 + (1 - abar).sqrt() * noise)


@pytest.mark.parametrize("kind", SCHEDULES)
@pytest.mark.parametrize("k", [1, 7, 30])
def test_posterior_moments_against_bayes_rule_on_a_grid(kind, k):
    """q(x_{t-1} | x_t, x0) ∝ q(x_t | x_{t-1}) q(x_{t-1} | x0), evaluated numerically for a scalar."""
    schedule = SCHEDULES[kind](40)
    x0_value, xt_value = 0.8, -0.3
    beta = schedule.betas[k].item()
    abar_prev = schedule.alphas_cumprod[k - 1].item()
    grid = torch.linspace(-6, 6, 400_001, dtype=torch.float64)
    log_prior = -0.5 * (grid - math.sqrt(abar_prev) * x0_value) ** 2 / (1 - abar_prev)
    log_lik = -0.5 * (xt_value - math.sqrt(1 - beta) * grid) ** 2 / beta
    w = torch.exp(log_prior + log_lik - (log_prior + log_lik).max())
    w = w / w.sum()
    mean_num = (w * grid).sum().item()
    var_num = (w * (grid - mean_num) ** 2).sum().item()
    mean, var = schedule.posterior_moments(
        torch.full((1, 1, 1, 1), x0_value), torch.full((1, 1, 1, 1), xt_value), torch.tensor([k])
    )
    assert mean.item() == pytest.approx(mean_num, abs=1e-5)
    assert var.item() == pytest.approx(var_num, rel=1e-3)


def test_posterior_at_the_first_step_is_the_clean_field():
    schedule = NoiseSchedule.linear(100)
    x0, xt = torch.randn(2, 1, 3, 3), torch.randn(2, 1, 3, 3)
    mean, var = schedule.posterior_moments(x0, xt, torch.tensor([0, 0]))
    assert torch.allclose(mean, x0, atol=1e-6) and torch.all(var == 0)


@pytest.mark.parametrize("kind", SCHEDULES)
def test_eps_v_x0_conversions_round_trip(kind):
    schedule = SCHEDULES[kind](200)
    gen = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(5, 2, 4, 6, generator=gen), torch.randn(5, 2, 4, 6, generator=gen)
    t = torch.tensor([0, 20, 100, 150, 180])
    x_t = schedule.q_sample(x0, t, eps)
    v = schedule.velocity(x0, eps, t)
    assert torch.allclose(schedule.predict_x0(x_t, t, eps, "eps"), x0, atol=1e-3)
    assert torch.allclose(schedule.predict_x0(x_t, t, v, "v"), x0, atol=1e-4)
    assert torch.allclose(schedule.predict_x0(x_t, t, x0, "x0"), x0)
    assert torch.allclose(schedule.predict_eps(x_t, t, v, "v"), eps, atol=1e-4)
    assert torch.allclose(schedule.predict_eps(x_t[1:], t[1:], x0[1:], "x0"), eps[1:], atol=1e-3)
    assert torch.equal(schedule.target(x0, eps, t, "v"), v)


def test_from_config_round_trip():
    for schedule in (NoiseSchedule.linear(300, 2e-4, 0.03), NoiseSchedule.cosine(120, 0.01)):
        again = NoiseSchedule.from_config(schedule.config)
        assert torch.equal(again.betas, schedule.betas)


def test_bad_input_is_named():
    with pytest.raises(ConfigError, match="beta_start"):
        NoiseSchedule.linear(100, beta_start=0.1, beta_end=0.01)
    with pytest.raises(ConfigError, match="prediction"):
        zero = torch.zeros(1, 1, 2, 2)
        NoiseSchedule.linear(10).predict_x0(zero, torch.tensor([0]), zero, "score")
    with pytest.raises(ShapeError, match="0 .. 9"):
        NoiseSchedule.linear(10).q_moments(torch.zeros(1, 1, 2, 2), torch.tensor([10]))
    with pytest.raises(ShapeError, match="integer"):
        NoiseSchedule.linear(10).q_moments(torch.zeros(1, 1, 2, 2), torch.tensor([0.5]))
    with pytest.raises(ConfigError, match="kind"):
        NoiseSchedule.from_config({"kind": "sigmoid"})
