"""The geo benchmark's trained models (diffusion models per task, the RePaint peer) and the data split they share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metamap.bench.geo.settings import LR, MEMBERS, K, Settings
from metamap.geo.anomaly import FieldScaler, field_fraction
from metamap.geo.data import PatchSource, static_channels
from metamap.geo.fill import FILL_COND_CHANNELS, fill_batches, residual_inputs, run_variogram
from metamap.geo.io import GeoField
from metamap.geo.models import GeoModel
from metamap.geo.train import train_task


@dataclass
class Setup:
    field: GeoField
    train_times: np.ndarray
    test_times: np.ndarray
    scaler: FieldScaler  # the fill run's model space (fitted on the training times)
    fraction: np.ndarray  # year fraction of every time step [T]
    static: np.ndarray  # [2, H, W]
    lat: np.ndarray
    lon: np.ndarray

    def to_model(self, values: np.ndarray, times: int | np.ndarray) -> np.ndarray:
        """Fields ``[T, H, W]`` (or one ``[H, W]`` with an int ``times``) at time indices ``times`` -> model space."""
        fraction = np.atleast_1d(self.fraction[times])
        return (
            self.scaler.to_model(values, fraction)
            if np.ndim(times)
            else self.scaler.to_model(values[None], fraction)[0]
        )

    def from_model(self, z: np.ndarray, time: int) -> np.ndarray:
        """Model-space fields ``[..., H, W]`` of one time index -> file unit, same shape."""
        return self.scaler.from_model(np.asarray(z)[..., None, :, :], self.fraction[time : time + 1])[..., 0, :, :]

    def climatology(self, time: int) -> np.ndarray:
        """The training climatology ``[H, W]`` at time index ``time``, file unit."""
        return self.scaler.climatology_field(self.fraction[time : time + 1])[0]


def make_setup(model: GeoModel, field: GeoField, train_times: np.ndarray, test_times: np.ndarray) -> Setup:
    meta = model.meta
    return Setup(
        field,
        train_times,
        test_times,
        model.scaler,
        field_fraction(field),
        static_channels(field.lat, field.lon, meta["lat_range"], meta["lon_range"]),
        field.lat,
        field.lon,
    )


def train_model(
    field: GeoField, task: str, times: np.ndarray, budget: tuple[int, int], settings: Settings, runs: Path
) -> GeoModel:
    steps, seconds = budget
    return train_task(
        field,
        task,
        times,
        steps=steps,
        max_seconds=seconds,
        run_dir=runs / task,
        lr=LR,
        batch=settings.batch,
        patch=64,
        k=K,
        base=settings.base,
        max_scan=10_000,
        progress=True,
    )


def train_peer(settings: Settings, field: GeoField, setup: Setup, train_times: np.ndarray, runs: Path, fill: GeoModel):
    """Train (or resume) the RePaint peer as a conditional residual model: on our ``fill`` model's batches
    (residual from the kriging estimate, with the same conditioning channels and variogram).

    Returns ``(fill(values [H, W] in model space with NaN, seed) -> [M, H, W], info)``: kriging estimate plus
    residuals sampled by ``RePaintScheduler``.
    """
    from metamap.bench.repaint_peer import train_repaint_peer
    from metamap.diffusion.schedules import NoiseSchedule

    steps, seconds = settings.peer_budget
    variogram = run_variogram(fill)
    reference_parameters = sum(p.numel() for p in fill.network.parameters())
    source = PatchSource(field, setup.scaler, train_times, (64, 64), seed=0)
    peer = train_repaint_peer(
        fill_batches(source, settings.batch, variogram, seed=0),
        channels=1,
        reference_parameters=reference_parameters,
        cond_channels=FILL_COND_CHANNELS,
        schedule=NoiseSchedule.cosine(1000),
        steps=steps,
        lr=LR,
        seed=0,
        run_dir=runs / "peer",
        max_seconds=seconds,
    )

    def fill_field(values: np.ndarray, seed: int) -> np.ndarray:
        field_t, observed, estimate, cond = residual_inputs(values, setup.static, variogram)
        cond = cond.expand(MEMBERS, -1, -1, -1)
        known = torch.zeros(MEMBERS, 1, *values.shape)  # the residual at an observed pixel: kriging is exact there
        mask = observed[None, None].expand(MEMBERS, 1, -1, -1)
        out = peer.inpaint(
            known,
            mask,
            cond,
            steps=settings.repaint_steps,
            jump_length=settings.repaint_jump,
            jump_n_sample=settings.repaint_jump_n_sample,
            generator=torch.Generator().manual_seed(seed),
        )
        return torch.where(observed, field_t, out[:, 0] + estimate[0]).numpy()

    info = {
        "steps": peer.trained.step,
        "seconds": peer.trained.seconds,
        "n_parameters": peer.n_parameters,
        "ours_n_parameters": reference_parameters,
    }
    return fill_field, info


def training_info(model: GeoModel) -> dict[str, Any]:
    return {"steps": model.trained.step, "seconds": model.trained.seconds}
