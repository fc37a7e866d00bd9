"""The bridge from geo tasks to :mod:`metamap.diffusion`: build, train, save, load and sample a model.

A :class:`GeoModel` is a trained diffusion model (its EMA network, noise
schedule and prediction type) plus the geo metadata needed to use it on a
file: the task (``fill`` | ``forecast`` | ``generate``), what it was trained
on (variable, units, calendar, latitude and longitude values, see
:meth:`metamap.geo.io.GeoField.identity`), the transform (the training
model space of :mod:`metamap.geo.anomaly`: value transform, seasonal
climatology of its grid, one standard deviation), the grid ranges for the
static channels, the history length ``k`` of a forecaster, and the pixels
that are undefined by nature. A run folder holds the diffusion checkpoints
(written by :func:`metamap.training.diffusion.train_diffusion`), the final
model (``model/``), ``climatology.npy`` (the anomalies' per-pixel mean),
``seasonal.npy`` (the harmonic coefficients ``[P, H, W]``), ``never_valid.npy``
and ``geo.json`` (with the transform and the number of harmonics); all but the model are written before training starts, so that
an interrupted run can be checked against the data it resumes with.

Run folders whose ``geo.json`` does not record the training data's identity
(written before it did) are refused by :func:`check_applies`: a run cannot
be checked against new data without it, so it must be trained again.
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
from metamap.geo.anomaly import FieldScaler, anomaly_standardizer
from metamap.geo.climatology import SeasonalClimatology
from metamap.geo.io import GeoField, check_same_field
from metamap.geo.transforms import KINDS, ValueTransform
from metamap.nn.devices import module_device
from metamap.preprocessing import Standardizer
from metamap.report import atomic_write_bytes, write_json
from metamap.seeding import seeded

TASKS = ("fill", "forecast", "generate")
GEO_META = "geo.json"
MODEL_FILE = "model"
CLIMATOLOGY = "climatology.npy"
SEASONAL = "seasonal.npy"
NEVER_VALID = "never_valid.npy"
LOSS_PLOT = "loss.png"  # the training loss curve, drawn from the run's metrics.jsonl at the end
RUN_FILES = (
    GEO_META,
    MODEL_FILE,
    CLIMATOLOGY,
    SEASONAL,
    NEVER_VALID,
    LOSS_PLOT,
)  # what a geo run writes besides checkpoints
IDENTITY_KEYS = ("var", "units", "calendar", "lat", "lon")
DESIGN = "seasonal-anomaly-residual-v1"  # model space of metamap.geo.anomaly; fill learns the residual


@dataclass
class GeoModel:
    """A trained diffusion model for one geo task. ``network`` maps ``(x_t, t, cond)`` to the prediction;
    ``scaler`` maps the file's values on the grid it was trained on to model space and back, and
    ``never_valid [H, W]`` are its pixels that were NaN at every scanned training time."""

    network: torch.nn.Module
    schedule: Any
    prediction: str
    scaler: FieldScaler
    never_valid: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    trained: Any = None

    def save(self, run_dir: Path) -> None:
        """Write the diffusion checkpoint, the climatology, the never-valid mask and ``geo.json``."""
        self.trained.save(Path(run_dir) / MODEL_FILE)
        save_run_data(run_dir, self.meta, self.scaler, self.never_valid)

    @classmethod
    def load(cls, run_dir: Path, device: torch.device | str = "cpu") -> GeoModel:
        """Rebuild a model saved by :meth:`save`, its network on ``device``."""
        from metamap.training.diffusion import TrainedDiffusion

        run_dir = Path(run_dir)
        paths = [run_dir / GEO_META, run_dir / CLIMATOLOGY, run_dir / NEVER_VALID]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise CheckpointError(
                f"{run_dir}: missing {', '.join(missing)}; expected a run folder of metamap geo train"
            )
        meta = read_meta(run_dir)
        check_design(meta, str(run_dir))
        try:
            scaler, never_valid = read_scaler(run_dir, meta), np.load(paths[2], allow_pickle=False)
        except (KeyError, TypeError, ValueError, OSError, CheckpointError) as exc:
            raise CheckpointError(f"{run_dir}: corrupt run folder ({exc})") from exc
        return wrap(TrainedDiffusion.load(run_dir / MODEL_FILE, device), meta, scaler, never_valid)


def read_scaler(run_dir: Path, meta: dict[str, Any]) -> FieldScaler:
    """The :class:`FieldScaler` of a run folder (``climatology.npy``, ``seasonal.npy``, ``geo.json``)."""
    mean = np.load(run_dir / CLIMATOLOGY, allow_pickle=False)
    coefficients = np.load(run_dir / SEASONAL, allow_pickle=False).astype(np.float64)
    harmonics = int(meta["harmonics"])
    if coefficients.shape != (1 + 2 * harmonics, *mean.shape):
        raise ValueError(f"{SEASONAL} is {list(coefficients.shape)}, expected {1 + 2 * harmonics} x {list(mean.shape)}")
    kind = str(meta["value_transform"]["kind"])
    if kind not in KINDS:
        raise ValueError(f"unknown value transform {kind!r}")
    transform = ValueTransform(kind, float(meta["value_transform"]["to_mm_per_day"]))
    params = anomaly_standardizer(str(meta.get("var"))).get_params()
    standardizer = Standardizer.from_state_dict({**params, "mean": mean, "scale": float(meta["std"])})
    return FieldScaler(transform, SeasonalClimatology(coefficients, harmonics), standardizer)


def read_meta(run_dir: Path) -> dict[str, Any]:
    """The ``geo.json`` of a run folder."""
    path = Path(run_dir) / GEO_META
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise CheckpointError(f"{path}: unreadable run metadata ({exc})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    return meta


def check_design(meta: dict[str, Any], run_label: str) -> None:
    """Refuse a run written before the seasonal model space and the residual fill (no ``design`` key), or a
    fill run without the kriging variogram its conditioning is built with: its inputs cannot be rebuilt
    (:class:`CheckpointError`)."""
    if meta.get("design") != DESIGN:
        older = meta.get("design", "per-pixel mean")
    elif meta.get("task") == "fill" and "variogram" not in meta:
        older = "fill on a Gaussian interpolation"
    else:
        return
    raise CheckpointError(
        f"{run_label} was trained with an older geo design ({older}; this metamap needs {DESIGN} and, "
        f"for a fill, a kriging variogram); train it again into a new run folder"
    )


def check_applies(meta: dict[str, Any], field: GeoField, data_label: str, run_label: str) -> None:
    """Refuse to apply (or go on training) a run with metadata ``meta`` on ``field`` unless it is the same
    variable, units, calendar and grid (:func:`metamap.geo.io.check_same_field`); a run that does not record
    them is refused too (:class:`CheckpointError`)."""
    missing = [key for key in IDENTITY_KEYS if key not in meta]
    if missing:
        raise CheckpointError(
            f"{run_label} does not record the {', '.join(missing)} of its training data "
            f"(written by an older metamap); train it again into a new run folder"
        )
    check_same_field(meta, field, data_label, run_label)


def save_run_data(run_dir: Path, meta: dict[str, Any], scaler: FieldScaler, never_valid: np.ndarray) -> None:
    """Write everything of a run but its network: ``climatology.npy`` ``[H, W]``, ``seasonal.npy``
    ``[P, H, W]``, ``never_valid.npy`` ``[H, W]`` and ``geo.json`` (``meta`` plus the model space
    ``z = (T(x) - seasonal(f) - climatology) / std``), each atomically."""
    run_dir = Path(run_dir)
    std = scaler.std
    _save_array(run_dir / CLIMATOLOGY, scaler.standardizer.mean_.astype(np.float32))
    _save_array(run_dir / SEASONAL, scaler.climatology.coefficients.astype(np.float32))
    _save_array(run_dir / NEVER_VALID, never_valid.astype(bool))
    transform = {
        "z": "(T(x) - seasonal(f) - climatology) / std",
        "climatology": CLIMATOLOGY,
        "seasonal": SEASONAL,
        "std": std,
    }
    write_json(
        run_dir / GEO_META,
        {
            **meta,
            "design": DESIGN,
            "std": std,
            "harmonics": scaler.climatology.harmonics,
            "value_transform": scaler.transform.to_json(),
            "transform": transform,
        },
    )


def _save_array(path: Path, array: np.ndarray) -> None:
    """``np.save`` to a temporary file and rename it, so that an interruption leaves no torn ``.npy``."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def wrap(trained: Any, meta: dict[str, Any], scaler: FieldScaler, never_valid: np.ndarray) -> GeoModel:
    """A :class:`GeoModel` around a :class:`metamap.training.diffusion.TrainedDiffusion`."""
    return GeoModel(
        network=trained.model,
        schedule=trained.schedule,
        prediction=trained.prediction,
        scaler=scaler,
        never_valid=never_valid,
        meta=meta,
        trained=trained,
    )


def build_network(cond_channels: int, base: int = 32, time_embedding: bool = True) -> torch.nn.Module:
    """The UNet shared by every geo model: one field channel in and out, widths ``base x (1, 2, 2)``."""
    from metamap.nn.unet import UNet2d

    return UNet2d(1, 1, cond_channels=cond_channels, base=base, mults=(1, 2, 2), time_embedding=time_embedding)


def train_model(
    batches: Callable[[], dict[str, torch.Tensor]],
    cond_channels: int,
    meta: dict[str, Any],
    scaler: FieldScaler,
    never_valid: np.ndarray,
    *,
    steps: int,
    run_dir: Path | None,
    base: int = 32,
    lr: float = 2e-4,
    prediction: str = "v",
    ema: float = 0.999,
    seed: int = 0,
    max_seconds: float | None = None,
    log_every: int = 50,
    progress: bool = True,
    device: torch.device | str = "cpu",
) -> GeoModel:
    """Train a diffusion model (cosine schedule, 1000 steps) on ``device`` on ``batches`` and return it.

    ``run_dir`` keeps checkpoints (a rerun resumes), the metrics log (the mean loss of every
    ``log_every`` steps) and, at the end, the model and ``geo.json``.
    """
    from metamap.diffusion.schedules import NoiseSchedule
    from metamap.training.diffusion import train_diffusion

    with seeded(seed):
        network = build_network(cond_channels, base).to(device)
    schedule = NoiseSchedule.cosine(1000)
    trained = train_diffusion(
        network,
        schedule,
        batches,
        steps=steps,
        lr=lr,
        prediction=prediction,
        ema=ema,
        seed=seed,
        run_dir=run_dir,
        progress=progress,
        max_seconds=max_seconds,
        log_every=log_every,
    )
    model = wrap(
        trained,
        {**meta, "base": base, "prediction": prediction, "steps_done": trained.step, "train_seconds": trained.seconds},
        scaler,
        never_valid,
    )
    if run_dir is not None:
        model.save(run_dir)
    return model


def sample_ensemble(
    model: GeoModel,
    cond: torch.Tensor | None,
    members: int,
    *,
    steps: int = 20,
    sampler: str = "dpmpp",
    seed: int = 0,
    known: torch.Tensor | None = None,
    known_mask: torch.Tensor | None = None,
    resample: int = 1,
    shape: tuple[int, int] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """``members`` samples ``[M, 1, H, W]`` (standardized, on the CPU); ``cond [M, C, H, W]`` already repeated
    per member. The noise is drawn on the network's device from a generator seeded with ``seed``; ``progress``
    shows a bar over the sampler's steps."""
    from metamap.diffusion.samplers import sample

    height, width = shape if shape is not None else tuple(cond.shape[-2:])
    generator = torch.Generator(device=module_device(model.network)).manual_seed(seed)
    model.network.eval()
    with torch.no_grad():
        return sample(
            model.network,
            model.schedule,
            (members, 1, height, width),
            cond=cond,
            sampler=sampler,
            steps=steps,
            prediction=model.prediction,
            generator=generator,
            known=known,
            known_mask=known_mask,
            resample=resample,
            progress=progress,
        ).cpu()
