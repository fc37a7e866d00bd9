"""Noise schedules of the discrete-time Gaussian diffusion (Ho et al. 2020).

The forward process adds noise in ``n_steps`` steps,
``q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)``, so that
``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)`` with
``abar_t = prod_{s <= t} (1 - beta_s)``. Step indices run ``0 .. n_steps - 1``
(index ``k`` is the paper's ``t = k + 1``); the network sees the continuous
time ``k / n_steps``. A schedule knows the noise arithmetic and nothing of
networks.

Predictions: ``"eps"`` (the noise), ``"v"`` (Salimans & Ho 2022,
``v = sqrt(abar) eps - sqrt(1 - abar) x_0``) and ``"x0"`` (the clean field).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from metamap.errors import ConfigError, ShapeError, describe

PREDICTIONS = ("eps", "v", "x0")


def check_prediction(prediction: str) -> None:
    """Raise ConfigError unless ``prediction`` is one of ``eps``, ``v``, ``x0``."""
    if prediction not in PREDICTIONS:
        raise ConfigError(f"prediction must be one of {PREDICTIONS}; got {prediction!r}")


class NoiseSchedule:
    """``betas [n_steps]`` (float64) and the quantities derived from them.

    Build with ``NoiseSchedule.linear(...)`` or ``NoiseSchedule.cosine(...)``.
    Per-sample coefficients are returned as float32 ``[B, 1, 1, 1]`` so they
    broadcast over fields ``[B, C, H, W]``.
    """

    def __init__(self, betas: torch.Tensor, config: dict[str, Any] | None = None) -> None:
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or len(betas) < 1 or not bool(((betas > 0) & (betas < 1)).all()):
            raise ConfigError(f"betas must be a 1-D tensor with values in (0, 1); got {describe(betas)}")
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self.alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        self.n_steps = len(betas)
        # q(x_{t-1} | x_t, x0) = N(coef_x0 x0 + coef_xt x_t, posterior_variance), in float64 so that
        # the first step (1 - abar ~ beta) keeps its precision
        one_minus = 1 - self.alphas_cumprod
        self.posterior_coef_x0 = betas * self.alphas_cumprod_prev.sqrt() / one_minus
        self.posterior_coef_xt = (1 - self.alphas_cumprod_prev) * (1 - betas).sqrt() / one_minus
        self.posterior_variance = betas * (1 - self.alphas_cumprod_prev) / one_minus
        self.config = config or {"kind": "custom", "betas": betas.tolist()}

    @classmethod
    def linear(cls, n_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
        """Betas evenly spaced from ``beta_start`` to ``beta_end`` (Ho et al. 2020)."""
        if n_steps < 1 or not 0 < beta_start <= beta_end < 1:
            raise ConfigError(
                f"linear schedule expects n_steps >= 1 and 0 < beta_start <= beta_end < 1; "
                f"got n_steps={n_steps}, beta_start={beta_start}, beta_end={beta_end}"
            )
        betas = torch.linspace(beta_start, beta_end, n_steps, dtype=torch.float64)
        return cls(betas, {"kind": "linear", "n_steps": n_steps, "beta_start": beta_start, "beta_end": beta_end})

    @classmethod
    def cosine(cls, n_steps: int = 1000, s: float = 0.008) -> NoiseSchedule:
        """``abar(t) = f(t) / f(0)``, ``f(t) = cos((t / T + s) / (1 + s) * pi / 2)^2``, betas capped at 0.999
        (Nichol & Dhariwal 2021, eq. 17)."""
        if n_steps < 1 or s < 0:
            raise ConfigError(f"cosine schedule expects n_steps >= 1 and s >= 0; got n_steps={n_steps}, s={s}")
        steps = torch.arange(n_steps + 1, dtype=torch.float64)
        f = torch.cos((steps / n_steps + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        betas = (1 - abar[1:] / abar[:-1]).clamp(min=1e-8, max=0.999)
        return cls(betas, {"kind": "cosine", "n_steps": n_steps, "s": s})

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> NoiseSchedule:
        """Rebuild a schedule from its ``config`` (as stored in checkpoints)."""
        kind = config.get("kind")
        if kind == "linear":
            return cls.linear(config["n_steps"], config["beta_start"], config["beta_end"])
        if kind == "cosine":
            return cls.cosine(config["n_steps"], config["s"])
        if kind == "custom":
            return cls(torch.tensor(config["betas"], dtype=torch.float64))
        raise ConfigError(f"unknown schedule kind {kind!r}; expected 'linear', 'cosine' or 'custom'")

    # -- per-sample coefficients -------------------------------------------------

    def _at(self, values: torch.Tensor, t_index: torch.Tensor) -> torch.Tensor:
        t_index = torch.as_tensor(t_index)
        if t_index.ndim != 1 or t_index.dtype not in (torch.int64, torch.int32):
            raise ShapeError(f"t_index must be an integer tensor [B]; got {describe(t_index)}")
        if len(t_index) and (int(t_index.min()) < 0 or int(t_index.max()) >= self.n_steps):
            raise ShapeError(f"t_index must lie in 0 .. {self.n_steps - 1}; got {t_index.min()} .. {t_index.max()}")
        return values[t_index.cpu().long()].float().reshape(-1, 1, 1, 1).to(t_index.device)

    def time(self, t_index: torch.Tensor) -> torch.Tensor:
        """Continuous time ``t_index / n_steps`` (float32 ``[B]``) that the network receives."""
        return t_index.float() / self.n_steps

    def q_moments(self, x0: torch.Tensor, t_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``sqrt(abar_t) x0`` (``[B, C, H, W]``) and variance ``1 - abar_t`` (``[B, 1, 1, 1]``) of q(x_t|x0)."""
        abar = self._at(self.alphas_cumprod, t_index)
        return abar.sqrt() * x0, 1 - abar

    def q_sample(self, x0: torch.Tensor, t_index: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """A draw of ``x_t ~ q(x_t | x0)``: ``sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``."""
        mean, var = self.q_moments(x0, t_index)
        return mean + var.sqrt() * noise

    def posterior_moments(
        self, x0: torch.Tensor, x_t: torch.Tensor, t_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``[B, C, H, W]`` and variance ``[B, 1, 1, 1]`` of q(x_{t-1} | x_t, x0) (Ho et al. 2020, eq. 7).

        At ``t_index = 0`` the previous state is the clean field: mean ``x0``, variance 0.
        """
        mean = self._at(self.posterior_coef_x0, t_index) * x0 + self._at(self.posterior_coef_xt, t_index) * x_t
        return mean, self._at(self.posterior_variance, t_index)

    # -- conversions between predictions -----------------------------------------

    def predict_x0(
        self, x_t: torch.Tensor, t_index: torch.Tensor, output: torch.Tensor, prediction: str
    ) -> torch.Tensor:
        """The clean field implied by the network ``output`` of kind ``prediction`` at ``x_t``."""
        check_prediction(prediction)
        if prediction == "x0":
            return output
        abar = self._at(self.alphas_cumprod, t_index)
        if prediction == "eps":
            return (x_t - (1 - abar).sqrt() * output) / abar.sqrt()
        return abar.sqrt() * x_t - (1 - abar).sqrt() * output

    def predict_eps(
        self, x_t: torch.Tensor, t_index: torch.Tensor, output: torch.Tensor, prediction: str
    ) -> torch.Tensor:
        """The noise implied by the network ``output`` of kind ``prediction`` at ``x_t``."""
        check_prediction(prediction)
        if prediction == "eps":
            return output
        abar = self._at(self.alphas_cumprod, t_index)
        if prediction == "v":
            return (1 - abar).sqrt() * x_t + abar.sqrt() * output
        return (x_t - abar.sqrt() * output) / (1 - abar).sqrt()

    def velocity(self, x0: torch.Tensor, noise: torch.Tensor, t_index: torch.Tensor) -> torch.Tensor:
        """``v = sqrt(abar_t) noise - sqrt(1 - abar_t) x0``: the v-prediction target."""
        abar = self._at(self.alphas_cumprod, t_index)
        return abar.sqrt() * noise - (1 - abar).sqrt() * x0

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t_index: torch.Tensor, prediction: str) -> torch.Tensor:
        """What a network of kind ``prediction`` should output for ``x_t = q_sample(x0, t_index, noise)``."""
        check_prediction(prediction)
        if prediction == "eps":
            return noise
        if prediction == "v":
            return self.velocity(x0, noise, t_index)
        return x0
