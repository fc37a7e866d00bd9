"""Train a geo model for one task on one field: the recipe shared by ``metamap geo train`` and the benchmark."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from metamap.errors import CheckpointError, ConfigError
from metamap.geo.data import PatchSource, check_patch, grid_ranges, scan_training
from metamap.geo.fill import FILL_COND_CHANNELS, fill_batches, fit_variogram
from metamap.geo.forecast import MAX_LEAD, forecast_batches, forecast_cond_channels, increment_scales
from metamap.geo.generate import GENERATE_COND_CHANNELS, generation_batches
from metamap.geo.io import GeoField
from metamap.geo.kriging import NEIGHBOURS, Variogram
from metamap.geo.models import (
    GEO_META,
    LOSS_PLOT,
    TASKS,
    GeoModel,
    check_applies,
    check_design,
    read_meta,
    save_run_data,
    train_model,
)
from metamap.geo.transforms import choose_transform
from metamap.plotting import loss_curve
from metamap.training.checkpoint import latest_checkpoint
from metamap.training.metrics_log import read_records
from metamap.training.run_folder import claim_run_folder

IN_MEMORY_BYTES = 512 * 2**20  # smaller fields are read once; larger ones stream patch by patch from dask chunks


def train_task(
    field: GeoField,
    task: str,
    train_times: np.ndarray,
    *,
    steps: int,
    run_dir: Path | None,
    batch: int = 16,
    patch: int | tuple[int, int] = 64,
    k: int = 3,
    base: int = 32,
    lr: float = 5e-4,
    ema: float = 0.995,
    seed: int = 0,
    max_seconds: float | None = None,
    max_scan: int = 128,
    transform: str = "auto",
    log_every: int = 50,
    train_days: int | None = None,
    progress: bool = True,
    device: torch.device | str = "cpu",
    kriging_neighbours: int = NEIGHBOURS,
) -> GeoModel:
    """Train a diffusion model for ``task`` (``fill`` | ``forecast`` | ``generate``) on random patches of
    ``field`` drawn from ``train_times`` (time indices); ``run_dir`` keeps checkpoints (a rerun resumes or,
    when finished, reloads) and the result, and is held by this process for the run
    (:func:`metamap.training.run_folder.claim_run_folder`: a second writer is refused).

    A field of at most ``IN_MEMORY_BYTES`` (as float32) is read into memory
    once; a larger one streams lazily. The model space (value ``transform``: ``auto`` | ``none`` |
    ``log1p`` | ``power``, seasonal climatology, the anomalies' standard deviation,
    :mod:`metamap.geo.anomaly`) comes from at most ``max_scan`` of the training times. The network trains on
    ``device`` (each batch is moved there). The mean training loss of every ``log_every`` steps goes to
    ``metrics.jsonl`` / ``metrics.csv`` in ``run_dir`` (the trainer's log) and, at the end, to ``loss.png``.
    ``train_days``: the days of the month ``train_times`` was cut to (``--train-days``), recorded in
    ``geo.json`` so that ``metamap geo evaluate`` scores the other days by default. A fill run krige its
    conditioning from ``kriging_neighbours`` observed pixels per missing one (kept in the run, so that fills
    and evaluations use the same). An existing ``run_dir`` is continued
    only when it holds a run of the same task on the same variable, units,
    calendar and grid (else :class:`ConfigError`, :class:`DataError` or
    :class:`CheckpointError`, before any data are read).
    """
    if task not in TASKS:
        raise ConfigError(f"unknown geo task {task!r}; expected one of {', '.join(TASKS)}")
    if k < 1:
        raise ConfigError(f"the forecast history k must be >= 1, got {k}")
    run_dir = Path(run_dir) if run_dir is not None else None
    with claim_run_folder(run_dir, resume=True, what="run folder") if run_dir is not None else nullcontext():
        if run_dir is not None:
            check_run_folder(run_dir, field, task, kriging_neighbours)
        field = field.loaded(IN_MEMORY_BYTES)
        value_transform = choose_transform(field.attrs, transform)
        scaler, never_valid = scan_training(field, train_times, value_transform, max_times=max_scan, seed=seed)
        n_times = k + MAX_LEAD if task == "forecast" else 1
        source = PatchSource(field, scaler, train_times, check_patch(patch), n_times=n_times, seed=seed)
        lat_range, lon_range = grid_ranges(field)
        meta = {
            "task": task,
            **field.identity(),
            "grid": list(field.shape[1:]),
            "lat_range": lat_range,
            "lon_range": lon_range,
            "k": k,
            "patch": list(source.patch),
            "batch": batch,
            "lr": lr,
            "ema": ema,
            "scanned_times": int(min(len(train_times), max_scan)),
            "n_never_valid": int(never_valid.sum()),
            "train_days": train_days,
        }
        if task == "fill":
            variogram = fit_variogram(source, neighbours=kriging_neighbours)
            meta["variogram"] = variogram.to_json()
            batches, channels = fill_batches(source, batch, variogram, seed), FILL_COND_CHANNELS
        elif task == "forecast":
            meta["increment_std"] = increment_scales(source, k)
            batches = forecast_batches(source, batch, k, meta["increment_std"], seed)
            channels = forecast_cond_channels(k)
        else:
            batches, channels = generation_batches(source, batch), GENERATE_COND_CHANNELS
        if run_dir is not None:
            save_run_data(run_dir, meta, scaler, never_valid)
        model = train_model(
            batches,
            channels,
            meta,
            scaler,
            never_valid,
            steps=steps,
            run_dir=run_dir,
            base=base,
            lr=lr,
            ema=ema,
            seed=seed,
            max_seconds=max_seconds,
            log_every=log_every,
            progress=progress,
            device=device,
        )
        if run_dir is not None:
            loss_curve(read_records(run_dir), run_dir / LOSS_PLOT, ylabel="diffusion training loss (per step, mean)")
        return model


def check_run_folder(run_dir: Path, field: GeoField, task: str, kriging_neighbours: int = NEIGHBOURS) -> None:
    """Refuse to continue in ``run_dir`` unless it is new or holds a ``task`` run on ``field``'s variable,
    units, calendar and grid (a fill run: kriged from ``kriging_neighbours`` pixels)."""
    if (run_dir / GEO_META).is_file():
        meta = read_meta(run_dir)
        check_design(meta, f"the run folder {run_dir}")
        check_applies(meta, field, field.source or field.var, f"the run folder {run_dir}")
        if meta.get("task") != task:
            raise ConfigError(
                f"the run folder {run_dir} holds a {meta.get('task')} run; a {task} run needs its own folder"
            )
        if task == "fill":
            trained = Variogram.from_json(meta.get("variogram"), f"the run folder {run_dir}").neighbours
            if trained != kriging_neighbours:
                raise ConfigError(
                    f"the run folder {run_dir} was trained with --kriging-neighbours {trained}, not "
                    f"{kriging_neighbours}: continue with {trained} or choose a new folder"
                )
    elif run_dir.is_dir() and latest_checkpoint(run_dir) is not None:
        raise CheckpointError(
            f"the run folder {run_dir} holds checkpoints but no {GEO_META}; it is not a run of "
            f"metamap geo train: choose a new folder"
        )
