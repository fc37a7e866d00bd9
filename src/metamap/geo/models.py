"""The bridge from geo tasks to :mod:`metamap.diffusion`: build, train, save, load and sample a model.

A :class:`GeoModel` is a trained diffusion model (its EMA network, noise
schedule and prediction type) plus the geo metadata needed to use it on a
file: the task (``fill`` | ``forecast`` | ``generate``), the variable, the
standardization (the training climatology of its grid), the grid ranges for
the static channels, the history length ``k`` of a forecaster, and the
pixels that are undefined by nature. A run folder holds the diffusion
checkpoints (written by :func:`metamap.diffusion.training.train_diffusion`),
the final model (``model/``), ``climatology.npy``, ``never_valid.npy`` and
``geo.json``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metamap.errors import CheckpointError
from metamap.geo.data import Standardizer
from metamap.report import atomic_write_bytes, write_json

TASKS = ("fill", "forecast", "generate")
GEO_META = "geo.json"
MODEL_FILE = "model"
CLIMATOLOGY = "climatology.npy"
NEVER_VALID = "never_valid.npy"


@dataclass
class GeoModel:
    """A trained diffusion model for one geo task. ``network`` maps ``(x_t, t, cond)`` to the prediction;
    ``standardizer`` holds the training climatology ``[H, W]`` of the grid it was trained on and
    ``never_valid [H, W]`` its pixels that were NaN at every scanned training time."""

    network: torch.nn.Module
    schedule: Any
    prediction: str
    standardizer: Standardizer
    never_valid: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    trained: Any = None

    def save(self, run_dir: Path) -> None:
        """Write the diffusion checkpoint, the climatology, the never-valid mask and ``geo.json``."""
        run_dir = Path(run_dir)
        self.trained.save(run_dir / MODEL_FILE)
        _save_array(run_dir / CLIMATOLOGY, self.standardizer.mean.astype(np.float32))
        _save_array(run_dir / NEVER_VALID, self.never_valid.astype(bool))
        meta = {**self.meta, "std": self.standardizer.std}
        write_json(run_dir / GEO_META, meta)

    @classmethod
    def load(cls, run_dir: Path) -> "GeoModel":
        """Rebuild a model saved by :meth:`save`."""
        from metamap.diffusion.training import TrainedDiffusion

        run_dir = Path(run_dir)
        paths = [run_dir / GEO_META, run_dir / CLIMATOLOGY, run_dir / NEVER_VALID]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise CheckpointError(
                f"{run_dir}: missing {', '.join(missing)}; expected a run folder of metamap geo train"
            )
        try:
            meta = json.loads(paths[0].read_text())
            mean, never_valid = np.load(paths[1], allow_pickle=False), np.load(paths[2], allow_pickle=False)
        except (json.JSONDecodeError, ValueError, OSError) as exc:
            raise CheckpointError(f"{run_dir}: corrupt run folder ({exc})") from exc
        standardizer = Standardizer(mean, float(meta["std"]))
        return wrap(TrainedDiffusion.load(run_dir / MODEL_FILE), meta, standardizer, never_valid)


def _save_array(path: Path, array: np.ndarray) -> None:
    """``np.save`` to a temporary file and rename it, so that an interruption leaves no torn ``.npy``."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def wrap(trained: Any, meta: dict[str, Any], standardizer: Standardizer, never_valid: np.ndarray) -> GeoModel:
    """A :class:`GeoModel` around a :class:`metamap.diffusion.training.TrainedDiffusion`."""
    return GeoModel(network=trained.model, schedule=trained.schedule, prediction=trained.prediction,
                    standardizer=standardizer, never_valid=never_valid, meta=meta, trained=trained)


def build_network(cond_channels: int, base: int = 32, time_embedding: bool = True) -> torch.nn.Module:
    """The UNet shared by every geo model: one field channel in and out, widths ``base x (1, 2, 2)``."""
    from metamap.nn.unet import UNet2d

    return UNet2d(1, 1, cond_channels=cond_channels, base=base, mults=(1, 2, 2), time_embedding=time_embedding)


def train_model(batches: Callable[[], dict[str, torch.Tensor]], cond_channels: int, meta: dict[str, Any],
                standardizer: Standardizer, never_valid: np.ndarray, *,
                steps: int, run_dir: Path | None, base: int = 32, lr: float = 2e-4, prediction: str = "v",
                ema: float = 0.999, seed: int = 0, max_seconds: float | None = None, progress: bool = True) -> GeoModel:
    """Train a diffusion model (cosine schedule, 1000 steps) on ``batches`` and return it.

    ``run_dir`` keeps checkpoints (a rerun resumes) and, at the end, the
    model and ``geo.json``.
    """
    from metamap.diffusion.schedules import NoiseSchedule
    from metamap.diffusion.training import train_diffusion

    torch.manual_seed(seed)
    network = build_network(cond_channels, base)
    schedule = NoiseSchedule.cosine(1000)
    trained = train_diffusion(network, schedule, batches, steps=steps, lr=lr, prediction=prediction, ema=ema, seed=seed,
                              run_dir=run_dir, progress=progress, max_seconds=max_seconds)
    model = wrap(trained, {**meta, "base": base, "prediction": prediction, "steps_done": trained.step,
                           "train_seconds": trained.seconds}, standardizer, never_valid)
    if run_dir is not None:
        model.save(run_dir)
    return model


def sample_ensemble(model: GeoModel, cond: torch.Tensor | None, members: int, *, steps: int = 20,
                    sampler: str = "dpmpp", seed: int = 0, known: torch.Tensor | None = None,
                    known_mask: torch.Tensor | None = None, resample: int = 1,
                    shape: tuple[int, int] | None = None) -> torch.Tensor:
    """``members`` samples ``[M, 1, H, W]`` (standardized); ``cond [M, C, H, W]`` already repeated per member."""
    from metamap.diffusion.samplers import sample

    height, width = shape if shape is not None else tuple(cond.shape[-2:])
    generator = torch.Generator().manual_seed(seed)
    model.network.eval()
    with torch.no_grad():
        return sample(model.network, model.schedule, (members, 1, height, width), cond=cond, sampler=sampler,
                      steps=steps, prediction=model.prediction, generator=generator, known=known,
                      known_mask=known_mask, resample=resample)

