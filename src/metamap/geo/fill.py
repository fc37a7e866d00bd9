"""Gap-filling with diffusion models, returning ensembles.

Two ways, both in standardized units on a field ``[H, W]`` whose NaN pixels
are missing:

- :func:`conditional_fill`: residual diffusion on a classical estimate. The
  estimate is a fast Gaussian interpolation of the observed model-space values
  (:func:`classical_estimate`); the model learns the distribution of
  ``field - estimate`` given ``(observed mask, observed values with the
  missing set to 0, estimate, latitude, longitude)``, trained with random
  masks of the three kinds of :mod:`metamap.geo.masks` (:func:`fill_batches`)
  and sampled with a fast solver; a fill is estimate + residual sample;
- :func:`inpaint_fill`: training-free, with a model trained only to generate
  fields (conditioned on latitude and longitude only), via the sampler's
  RePaint-style resampling with the known pixels re-noised at every step.

Both put the observed pixels back exactly and leave NaN where the field is
undefined by nature (``never_valid``: NaN at every training time, such as sea
surface temperature over land).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from metamap.errors import DataError, ShapeError, describe
from metamap.geo.data import PatchSource
from metamap.geo.masks import random_training_mask
from metamap.geo.models import GeoModel, sample_ensemble

FILL_COND_CHANNELS = 5  # observed mask, observed values (0 where missing), estimate, latitude, longitude


def classical_estimate(values: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """A fast interpolation ``[H, W]`` float32 of ``values [H, W]`` (model space) from the ``observed`` pixels:
    the observed values where observed, elsewhere a Gaussian normalized convolution
    ``G * (o v) / G * o`` with the smallest width (in pixels, from the mean station spacing
    ``sqrt(HW / n)`` / 2, doubled as needed) whose weight reaches the pixel; 0 with no observed pixel.
    Milliseconds per field, so that training can condition on it; kriging (seconds) is the benchmark's
    reference."""
    from scipy.ndimage import gaussian_filter

    values, observed = np.asarray(values, np.float64), np.asarray(observed, bool) & np.isfinite(values)
    estimate = np.where(observed, values, np.nan)
    if not observed.any():
        return np.zeros(values.shape, np.float32)
    weight_in = observed.astype(np.float64)
    signal = np.where(observed, values, 0.0)
    sigma = 0.5 * np.sqrt(values.size / observed.sum())
    while np.isnan(estimate).any():
        weight = gaussian_filter(weight_in, sigma, mode="nearest", truncate=3.0)
        smooth = gaussian_filter(signal, sigma, mode="nearest", truncate=3.0)
        reached = np.isnan(estimate) & (weight > 1e-3)
        estimate[reached] = smooth[reached] / weight[reached]
        if sigma > 4 * max(values.shape):
            estimate[np.isnan(estimate)] = values[observed].mean()
        sigma *= 2
    return estimate.astype(np.float32)


def fill_condition(
    values: torch.Tensor, observed: torch.Tensor, estimate: torch.Tensor, static: torch.Tensor
) -> torch.Tensor:
    """Conditioning ``[B, 5, H, W]`` from model-space ``values [B, H, W]`` (NaN allowed where not observed),
    ``observed [B, H, W]`` bool, the classical ``estimate [B, H, W]`` and ``static [B, 2, H, W]``."""
    known = torch.where(observed, torch.nan_to_num(values), torch.zeros_like(values))
    return torch.cat([observed.float()[:, None], known[:, None], estimate[:, None], static], dim=1)


def fill_batches(source: PatchSource, batch: int, seed: int = 0) -> Callable[[], dict[str, torch.Tensor]]:
    """A batch maker for :func:`metamap.training.diffusion.train_diffusion`: ``{"x0", "cond", "valid"}``.

    Each patch gets a random mask (kind and missing fraction drawn as in
    :func:`metamap.geo.masks.random_training_mask`); the target is the whole
    patch minus its :func:`classical_estimate`, NaN pixels excluded through ``valid``.
    """
    rng = np.random.default_rng(seed)

    def make() -> dict[str, torch.Tensor]:
        patches = source.sample(batch)
        values = patches.values[:, 0]
        valid = torch.isfinite(values)
        masks = np.stack([random_training_mask(tuple(values.shape[-2:]), rng) for _ in range(batch)])
        observed = torch.from_numpy(masks) & valid
        estimate = torch.from_numpy(
            np.stack([classical_estimate(v, o) for v, o in zip(values.numpy(), observed.numpy(), strict=True)])
        )
        return {
            "x0": torch.nan_to_num(values - estimate)[:, None],
            "cond": fill_condition(values, observed, estimate, patches.static),
            "valid": valid[:, None],
        }

    return make


def _check_field(values: np.ndarray, static: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    values = np.asarray(values, np.float32)
    if values.ndim != 2 or static.shape != (2, *values.shape):
        raise ShapeError(f"expected a field [H, W] and static [2, H, W]; got {describe(values)} and {describe(static)}")
    observed = np.isfinite(values)
    if not observed.any():
        raise DataError("the field to fill has no observed (finite) pixel")
    return torch.from_numpy(values), torch.from_numpy(observed)


def _finish(
    samples: torch.Tensor, values: torch.Tensor, observed: torch.Tensor, never_valid: np.ndarray | None
) -> np.ndarray:
    """Put the observed pixels back exactly and NaN where undefined by nature: ``[M, H, W]``."""
    out = torch.where(observed, values, samples[:, 0]).numpy().astype(np.float32)
    if never_valid is not None:
        out[:, np.asarray(never_valid, bool)] = np.nan
    return out


def conditional_fill(
    model: GeoModel,
    values: np.ndarray,
    static: np.ndarray,
    members: int = 16,
    steps: int = 20,
    sampler: str = "dpmpp",
    seed: int = 0,
    never_valid: np.ndarray | None = None,
) -> np.ndarray:
    """Ensemble ``[M, H, W]`` (model space) filling the NaN pixels of ``values [H, W]``: the classical estimate
    plus residuals sampled from the conditional model."""
    field, observed = _check_field(values, static)
    estimate = torch.from_numpy(classical_estimate(values, observed.numpy()))
    cond = fill_condition(field[None], observed[None], estimate[None], torch.from_numpy(static)[None])
    samples = sample_ensemble(model, cond.expand(members, -1, -1, -1), members, steps=steps, sampler=sampler, seed=seed)
    return _finish(samples + estimate, field, observed, never_valid)


def inpaint_fill(
    model: GeoModel,
    values: np.ndarray,
    static: np.ndarray,
    members: int = 16,
    steps: int = 50,
    sampler: str = "ddim",
    resample: int = 4,
    seed: int = 0,
    never_valid: np.ndarray | None = None,
) -> np.ndarray:
    """Ensemble ``[M, H, W]`` (model space) by training-free inpainting with an unconditional model."""
    field, observed = _check_field(values, static)
    cond = torch.from_numpy(static)[None].expand(members, -1, -1, -1)
    known = torch.nan_to_num(field)[None, None].expand(members, 1, -1, -1)
    known_mask = observed[None, None].expand(members, 1, -1, -1)
    samples = sample_ensemble(
        model,
        cond,
        members,
        steps=steps,
        sampler=sampler,
        seed=seed,
        known=known,
        known_mask=known_mask,
        resample=resample,
    )
    return _finish(samples, field, observed, never_valid)
