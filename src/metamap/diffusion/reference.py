"""The exact denoiser for Gaussian data N(mu, sigma^2) per pixel — isolates a sampler's own error.

For Gaussian data the optimal network is known in closed form, so sampling
with :class:`GaussianDenoiser` in place of a trained network measures what the
sampler alone gets wrong (used by the sampler tests and ``metamap bench samplers``).
"""

from __future__ import annotations

import torch
from torch import nn

from metamap.diffusion.schedules import NoiseSchedule, check_prediction
from metamap.errors import ConfigError


class GaussianDenoiser(nn.Module):
    """The optimal network for data N(mu, sigma^2) per pixel, in closed form.

    ``x_t = sqrt(a) x0 + sqrt(1 - a) eps`` is Gaussian with variance
    ``v = a sigma^2 + 1 - a``, so ``E[x0 | x_t] = mu + sqrt(a) sigma^2 (x_t - sqrt(a) mu) / v`` and
    ``E[eps | x_t] = sqrt(1 - a) (x_t - sqrt(a) mu) / v``.

    Called like any network of the package, ``(x [B, C, H, W], t [B], cond) -> [B, C, H, W]``,
    with ``t = step index / n_steps`` and ``cond`` ignored; returns the ``prediction``
    target (``eps``, ``v`` or ``x0``). ``calls`` counts the network evaluations.
    """

    def __init__(self, schedule: NoiseSchedule, mu: float, sigma: float, prediction: str = "eps") -> None:
        super().__init__()
        check_prediction(prediction)
        if not sigma > 0:
            raise ConfigError(f"sigma must be > 0; got {sigma}")
        self.schedule, self.prediction, self.mu, self.sigma = schedule, prediction, mu, sigma
        self.calls = 0

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        self.calls += 1
        index = (t * self.schedule.n_steps).round().long()
        a = self.schedule.alphas_cumprod[index].float().reshape(-1, 1, 1, 1)
        resid = (x - a.sqrt() * self.mu) / (a * self.sigma**2 + 1 - a)
        eps = (1 - a).sqrt() * resid
        x0 = self.mu + a.sqrt() * self.sigma**2 * resid
        return {"eps": eps, "x0": x0, "v": a.sqrt() * eps - (1 - a).sqrt() * x0}[self.prediction]
