"""Training objective and variational bound of a diffusion model on fields with missing pixels.

``diffusion_loss`` is the simplified objective of Ho et al. 2020 (eq. 14):
the mean squared error between the network output and its target (noise,
velocity or clean field) at a uniformly drawn step. ``variational_bound``
is the full negative evidence lower bound (eq. 5) in nats per valid
dimension, a diagnostic for held-out data.

Missing pixels: ``valid [B, C, H, W]`` (bool) marks the pixels that exist.
Invalid pixels are set to 0 before anything is computed, so NaN in ``x0``
never reaches the network or the loss, and the loss is averaged over valid
pixels only.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from metamap.diffusion.schedules import NoiseSchedule, check_prediction
from metamap.errors import ConfigError, DataError, ShapeError, describe
from metamap.nn.devices import check_generator, module_device


def clean_inputs(
    x0: torch.Tensor, valid: torch.Tensor | None, cond: torch.Tensor | None, every_field: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check shapes and finiteness; return ``(x0 with invalid pixels zeroed, valid as float)``.

    Raises ShapeError for a wrong shape and DataError for NaN/inf at valid pixels,
    anywhere in ``cond``, or for no valid pixel in the batch (in some field, with
    ``every_field``).
    """
    if x0.ndim != 4:
        raise ShapeError(f"x0 must be a field batch [B, C, H, W]; got {describe(x0)}")
    if valid is None:
        valid = torch.ones_like(x0, dtype=torch.bool)
    if valid.shape != x0.shape or valid.dtype != torch.bool:
        raise ShapeError(f"valid must be a bool mask of the shape of x0 {list(x0.shape)}; got {describe(valid)}")
    finite = torch.isfinite(x0)
    bad = int((valid & ~finite).sum())
    if bad:
        raise DataError(f"x0 has {bad} NaN/inf values at pixels marked valid; pass valid=False there")
    if cond is not None and not bool(torch.isfinite(cond).all()):
        raise DataError(f"cond {describe(cond)} has NaN/inf values; fill them and pass a mask channel instead")
    if not bool(valid.any()) or (every_field and not bool(valid.any(dim=(1, 2, 3)).all())):
        raise DataError(f"{'every field of ' if every_field else ''}the batch needs at least one valid pixel")
    return torch.where(valid, x0, torch.zeros_like(x0)), valid.float()


def model_output(
    model: nn.Module, schedule: NoiseSchedule, x_t: torch.Tensor, t_index: torch.Tensor, cond: torch.Tensor | None
) -> torch.Tensor:
    """The network's raw output at ``x_t``: it sees the continuous time ``t_index / n_steps``."""
    output: torch.Tensor = model(x_t, schedule.time(t_index), cond)
    return output


def diffusion_loss(
    model: nn.Module,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    *,
    cond: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
    prediction: str = "eps",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Scalar simplified objective: mean over valid pixels of ``(output - target)^2``.

    ``x0 [B, C, H, W]`` standardized fields, ``cond [B, K, H, W]`` optional
    conditioning, ``valid [B, C, H, W]`` bool; steps and noise are drawn
    from ``generator`` on the model's device (where the inputs are moved).
    """
    check_prediction(prediction)
    device = module_device(model)
    check_generator(generator, device)
    x0, weight, cond = _on_device(device, x0, valid, cond)
    t_index = torch.randint(0, schedule.n_steps, (x0.shape[0],), generator=generator, device=device)
    noise = torch.randn(x0.shape, generator=generator, device=device)
    x_t = schedule.q_sample(x0, t_index, noise)
    out = model_output(model, schedule, x_t, t_index, cond)
    target = schedule.target(x0, noise, t_index, prediction)
    return ((out - target) ** 2 * weight).sum() / weight.sum()


@torch.no_grad()
def variational_bound(
    model: nn.Module,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    *,
    cond: torch.Tensor | None = None,
    prediction: str = "eps",
    valid: torch.Tensor | None = None,
    n_terms: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Negative ELBO ``[B]`` in nats per valid dimension (Ho et al. 2020, eq. 5).

    The bound is ``KL(q(x_T|x0) || N(0, I)) + sum_{t>1} KL(q(x_{t-1}|x_t, x0) || p(x_{t-1}|x_t))
    - log p(x0|x1)``, with the reverse variances fixed to the posterior
    variances and a Gaussian decoder of variance ``beta_1`` (fields are
    continuous, so ``-log p`` is a negative log-density, not a
    discretized likelihood). Each KL term is evaluated at one draw
    ``x_t ~ q(x_t | x0)``. With ``n_terms`` the KL terms are estimated by
    stratified sampling: the steps ``1 .. n_steps - 1`` are cut into
    ``n_terms`` contiguous strata, one random step per stratum is evaluated
    and weighted by the stratum's size (unbiased, cheaper, noisier; the
    default evaluates all ``n_steps`` terms, one network call each). The
    noise (and the strata's steps) are drawn from ``generator`` on the
    model's device; the bound comes back on that device.
    """
    check_prediction(prediction)
    device = module_device(model)
    check_generator(generator, device)
    x0, weight, cond = _on_device(device, x0, valid, cond, every_field=True)
    b = x0.shape[0]
    per_dim = weight.sum(dim=(1, 2, 3))

    def reduce(values: torch.Tensor) -> torch.Tensor:
        return (values * weight).sum(dim=(1, 2, 3)) / per_dim

    abar_last = schedule.alphas_cumprod[-1].item()
    # KL(N(sqrt(abar) x0, 1 - abar) || N(0, 1)) per dimension
    prior = reduce(0.5 * (abar_last * x0**2 - abar_last - math.log(1 - abar_last)))
    terms = _kl_terms(schedule.n_steps, n_terms, generator)
    total = prior
    for k, scale in [(0, 1.0), *terms]:
        t_index = torch.full((b,), k, dtype=torch.long, device=device)
        noise = torch.randn(x0.shape, generator=generator, device=device)
        x_t = schedule.q_sample(x0, t_index, noise)
        x0_hat = schedule.predict_x0(x_t, t_index, model_output(model, schedule, x_t, t_index, cond), prediction)
        if k == 0:
            decoder_var = schedule.betas[0].item()
            nll = 0.5 * (math.log(2 * math.pi * decoder_var) + (x0 - x0_hat) ** 2 / decoder_var)
            total = total + reduce(nll)
        else:
            mean_q, var = schedule.posterior_moments(x0, x_t, t_index)
            mean_p, _ = schedule.posterior_moments(x0_hat, x_t, t_index)
            total = total + scale * reduce((mean_q - mean_p) ** 2 / (2 * var))
    return total


def _on_device(
    device: torch.device,
    x0: torch.Tensor,
    valid: torch.Tensor | None,
    cond: torch.Tensor | None,
    every_field: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """:func:`clean_inputs` of the inputs moved to ``device``: ``(x0, valid as float, cond)``."""
    cond = cond.to(device) if cond is not None else None
    x0, weight = clean_inputs(
        x0.to(device), valid.to(device) if valid is not None else None, cond, every_field=every_field
    )
    return x0, weight, cond


def _kl_terms(n_steps: int, n_terms: int | None, generator: torch.Generator | None) -> list[tuple[int, float]]:
    """The steps whose KL term is evaluated, each with its weight (all steps, or one per stratum)."""
    if n_terms is None or n_terms >= n_steps - 1:
        return [(k, 1.0) for k in range(1, n_steps)]
    if n_terms < 1:
        raise ConfigError(f"n_terms must be >= 1; got {n_terms}")
    edges = torch.linspace(1, n_steps, n_terms + 1).round().long().tolist()
    terms = []
    for lo, hi in zip(edges, edges[1:]):
        where = generator.device if generator is not None else None
        k = lo + int(torch.randint(0, hi - lo, (1,), generator=generator, device=where))
        terms.append((k, float(hi - lo)))
    return terms
