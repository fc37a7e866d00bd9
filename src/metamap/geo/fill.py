"""Gap-filling with diffusion models, returning ensembles.

Two ways, both in standardized units on a field ``[H, W]`` whose NaN pixels
are missing:

- :func:`conditional_fill`: residual diffusion on kriging. The estimate is
  ordinary kriging of the observed model-space values with a variogram fitted
  on the training fields (:mod:`metamap.geo.kriging`); the model learns the
  distribution of ``field - estimate`` given ``(observed mask, observed values
  with the missing set to 0, estimate, kriging std, latitude, longitude)``, trained with random
  masks of the three kinds of :mod:`metamap.geo.masks` (:func:`fill_batches`)
  and sampled with a fast solver; a fill is estimate + residual sample. A
  caller that also wants the estimate runs the two halves itself:
  :func:`residual_inputs` (the kriging), then :func:`residual_fill`;
- :func:`inpaint_fill`: training-free, with a model trained only to generate
  fields (conditioned on latitude and longitude only), via the sampler's
  RePaint-style resampling with the known pixels re-noised at every step.

Both put the observed pixels back exactly and leave NaN where the field is
undefined by nature (``never_valid``: NaN at every training time, such as sea
surface temperature over land).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch

from metamap.errors import DataError, ShapeError, describe
from metamap.geo.calibration import Calibration
from metamap.geo.data import PatchSource
from metamap.geo.kriging import NEIGHBOURS, Variogram, grid_aspect, krige
from metamap.geo.masks import random_training_mask
from metamap.geo.models import GeoModel, sample_ensemble

FILL_COND_CHANNELS = 6  # observed mask, observed values (0 where missing), kriging estimate and std, lat, lon


def fit_variogram(source: PatchSource, fields: int = 64, neighbours: int = NEIGHBOURS) -> Variogram:
    """The fill's kriging variogram, fitted on ``fields`` random training patches of ``source`` (model space),
    kriging from ``neighbours`` pixels."""
    patches = source.sample(fields)
    return Variogram.fit(patches.values[:, 0].numpy(), grid_aspect(source.lat, source.lon), neighbours)


def run_variogram(model: GeoModel) -> Variogram:
    """The kriging variogram a fill run was trained with (CheckpointError for a run without one)."""
    return Variogram.from_json(model.meta.get("variogram"), "this fill run")


def kriged(values: np.ndarray, observed: np.ndarray, variogram: Variogram) -> tuple[torch.Tensor, torch.Tensor]:
    """Kriging of model-space ``values [B, H, W]`` from ``observed [B, H, W]``: ``(estimate, std)``, each
    ``[B, H, W]``, the std in units of the variogram's total standard deviation (0 to about 1)."""
    with ThreadPoolExecutor(max_workers=min(len(values), os.cpu_count() or 1)) as threads:  # numpy frees the GIL
        pairs = list(threads.map(lambda pair: krige(*pair, variogram), zip(values, observed, strict=True)))
    std = np.stack([s for _, s in pairs]) / np.float32(np.sqrt(variogram.total))
    return torch.from_numpy(np.stack([e for e, _ in pairs])), torch.from_numpy(std.astype(np.float32))


def fill_condition(
    values: torch.Tensor, observed: torch.Tensor, estimate: torch.Tensor, std: torch.Tensor, static: torch.Tensor
) -> torch.Tensor:
    """Conditioning ``[B, 6, H, W]`` from model-space ``values [B, H, W]`` (NaN allowed where not observed),
    ``observed [B, H, W]`` bool, the kriging ``estimate`` and ``std [B, H, W]`` of :func:`kriged` and
    ``static [B, 2, H, W]``."""
    known = torch.where(observed, torch.nan_to_num(values), torch.zeros_like(values))
    return torch.cat([observed.float()[:, None], known[:, None], estimate[:, None], std[:, None], static], dim=1)


def fill_batches(
    source: PatchSource, batch: int, variogram: Variogram, seed: int = 0
) -> Callable[[], dict[str, torch.Tensor]]:
    """A batch maker for :func:`metamap.training.diffusion.train_diffusion`: ``{"x0", "cond", "valid"}``.

    Each patch gets a random mask (kind and missing fraction drawn as in
    :func:`metamap.geo.masks.random_training_mask`); the target is the whole
    patch minus its kriging estimate (:func:`kriged` with ``variogram``), NaN pixels excluded through ``valid``.
    """
    rng = np.random.default_rng(seed)

    def make() -> dict[str, torch.Tensor]:
        patches = source.sample(batch)
        values = patches.values[:, 0]
        valid = torch.isfinite(values)
        masks = np.stack([random_training_mask(tuple(values.shape[-2:]), rng) for _ in range(batch)])
        observed = torch.from_numpy(masks) & valid
        estimate, std = kriged(values.numpy(), observed.numpy(), variogram)
        return {
            "x0": torch.nan_to_num(values - estimate)[:, None],
            "cond": fill_condition(values, observed, estimate, std, patches.static),
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


class ResidualInputs(NamedTuple):
    """What a residual fill of a field ``[H, W]`` starts from (:func:`residual_inputs`)."""

    field: torch.Tensor  # the field [H, W], NaN = missing
    observed: torch.Tensor  # its observed mask [H, W] bool
    estimate: torch.Tensor  # the kriging estimate [1, H, W]
    cond: torch.Tensor  # the conditioning [1, 6, H, W] (the kriging std among it)


def residual_inputs(values: np.ndarray, static: np.ndarray, variogram: Variogram) -> ResidualInputs:
    """What a residual fill of ``values [H, W]`` (NaN = missing) starts from, kriged with ``variogram``."""
    field, observed = _check_field(values, static)
    estimate, std = kriged(field[None].numpy(), observed[None].numpy(), variogram)
    return ResidualInputs(
        field,
        observed,
        estimate,
        fill_condition(field[None], observed[None], estimate, std, torch.from_numpy(static)[None]),
    )


def residual_fill(
    model: GeoModel,
    inputs: ResidualInputs,
    members: int = 16,
    steps: int = 20,
    sampler: str = "dpmpp",
    seed: int = 0,
    never_valid: np.ndarray | None = None,
    calibration: Calibration | None = None,
) -> np.ndarray:
    """Ensemble ``[M, H, W]`` (model space) filling the missing pixels of ``inputs`` (:func:`residual_inputs`
    with the run's variogram): their kriging estimate plus residuals sampled from the conditional model; with
    ``calibration`` (fitted by ``metamap geo evaluate``) the members are calibrated around that estimate."""
    field, observed, estimate, cond = inputs
    samples = sample_ensemble(model, cond.expand(members, -1, -1, -1), members, steps=steps, sampler=sampler, seed=seed)
    filled = samples + estimate[0]
    if calibration is not None:
        filled = torch.from_numpy(calibration.apply(filled[:, 0].numpy(), estimate[0].numpy()))[:, None]
    return _finish(filled, field, observed, never_valid)


def conditional_fill(
    model: GeoModel,
    values: np.ndarray,
    static: np.ndarray,
    members: int = 16,
    steps: int = 20,
    sampler: str = "dpmpp",
    seed: int = 0,
    never_valid: np.ndarray | None = None,
    calibration: Calibration | None = None,
) -> np.ndarray:
    """Ensemble ``[M, H, W]`` (model space) filling the NaN pixels of ``values [H, W]``: :func:`residual_fill`
    of their kriging with the run's variogram."""
    inputs = residual_inputs(values, static, run_variogram(model))
    return residual_fill(model, inputs, members, steps, sampler, seed, never_valid, calibration)


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
