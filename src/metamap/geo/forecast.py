"""Probabilistic forecasting of a field 1 to 6 hours ahead from the previous ``k`` fields.

One conditional diffusion model serves every lead: the lead is a
conditioning channel (``lead / 6``, constant over the grid), beside the
``k`` previous standardized fields (NaN set to 0) and latitude/longitude.
The model generates the change from the last known field, divided by that
change's training standard deviation at this lead (``increment_std``), so
that its target has unit scale at every lead; the forecast is the last
field plus the scaled change.
It is compared with persistence and with a deterministic UNet of the same
widths (:func:`train_deterministic`, ``time_embedding=False``, trained with
MSE on the same batches and the same number of steps).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from metamap.errors import CheckpointError, ShapeError, describe
from metamap.geo.data import PatchSource
from metamap.geo.models import GeoModel, build_network, sample_ensemble
from metamap.report import write_json, write_safetensors
from metamap.seeding import seeded
from metamap.training.trainer import Trainer

MAX_LEAD = 6


def forecast_cond_channels(k: int) -> int:
    """``k`` history fields, the lead and two static channels."""
    return k + 3


def forecast_condition(history: torch.Tensor, lead: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
    """Conditioning ``[B, k + 3, H, W]`` from ``history [B, k, H, W]`` (standardized, NaN allowed),
    ``lead [B]`` in steps (1..6) and ``static [B, 2, H, W]``."""
    if history.ndim != 4 or lead.shape != (history.shape[0],):
        raise ShapeError(f"expected history [B, k, H, W] and lead [B]; got {describe(history)}, {describe(lead)}")
    lead_map = (lead.float() / MAX_LEAD)[:, None, None, None].expand(-1, 1, *history.shape[-2:])
    return torch.cat([torch.nan_to_num(history), lead_map, static], dim=1)


def _check_source(source: PatchSource, k: int) -> None:
    if source.n_times != k + MAX_LEAD:
        raise ShapeError(f"forecast patches need {k + MAX_LEAD} consecutive steps, the source gives {source.n_times}")


def increment_scales(source: PatchSource, k: int, n_batches: int = 16, batch: int = 16) -> list[float]:
    """Standard deviation of ``x[t + lead] - x[t]`` (standardized units) for leads 1..6, from random
    training patches: ``[6]``."""
    _check_source(source, k)
    values = torch.cat([source.sample(batch).values for _ in range(n_batches)])
    last = values[:, k - 1]
    scales = []
    for lead in range(1, MAX_LEAD + 1):
        change = values[:, k - 1 + lead] - last
        scales.append(max(float(change[torch.isfinite(change)].std()), 1e-6))
    return scales


def forecast_batches(
    source: PatchSource, batch: int, k: int, scales: list[float], seed: int = 0
) -> Callable[[], dict[str, torch.Tensor]]:
    """Batches ``{"x0", "cond", "valid"}``: a random lead 1..6 per patch; ``x0`` is the scaled change
    from the last history field (``scales`` from :func:`increment_scales`); ``source`` gives ``k + 6`` steps."""
    _check_source(source, k)
    generator = torch.Generator().manual_seed(seed)
    scale = torch.tensor([1.0, *scales])

    def make() -> dict[str, torch.Tensor]:
        patches = source.sample(batch)
        lead = torch.randint(1, MAX_LEAD + 1, (batch,), generator=generator)
        change = (patches.values[torch.arange(batch), k - 1 + lead] - patches.values[:, k - 1])[:, None]
        change = change / scale[lead][:, None, None, None]
        return {
            "x0": torch.nan_to_num(change),
            "valid": torch.isfinite(change),
            "cond": forecast_condition(patches.values[:, :k], lead, patches.static),
        }

    return make


def diffusion_forecast(
    model: GeoModel,
    history: np.ndarray,
    static: np.ndarray,
    leads: list[int],
    members: int = 16,
    steps: int = 20,
    sampler: str = "dpmpp",
    seed: int = 0,
    progress: bool = False,
) -> np.ndarray:
    """Ensemble forecasts ``[L, M, H, W]`` (standardized) for each lead in ``leads`` from ``history [k, H, W]``
    (``progress``: a bar over the leads)."""
    from metamap.progress import progress_bar

    history_t = torch.from_numpy(np.asarray(history, np.float32))[None].expand(members, -1, -1, -1)
    static_t = torch.from_numpy(static)[None].expand(members, -1, -1, -1)
    scales = model.meta["increment_std"]
    out = []
    for index, lead in enumerate(progress_bar(leads, desc="forecast leads", enabled=progress)):
        cond = forecast_condition(history_t, torch.full((members,), lead), static_t)
        change = sample_ensemble(model, cond, members, steps=steps, sampler=sampler, seed=seed + index)[:, 0]
        out.append(history_t[:, -1] + scales[lead - 1] * change)
    return torch.stack(out).numpy()


def train_deterministic(
    batches: Callable[[], dict[str, torch.Tensor]],
    k: int,
    *,
    steps: int,
    base: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    max_seconds: float | None = None,
    run_dir: Path | None = None,
    progress: bool = True,
) -> torch.nn.Module:
    """A UNet of the same widths, ``time_embedding=False``, trained with MSE over valid pixels on the same
    batches (its field input is zeros: the conditioning channels carry the history and the lead).

    :class:`~metamap.training.trainer.Trainer` runs the ``steps`` (or ``max_seconds``) with progress and
    a clean Ctrl-C (TrainingInterrupted after the current step). With ``run_dir`` a finished model is
    reloaded instead of trained again.
    """
    from safetensors.torch import load_file

    with seeded(seed):
        network = build_network(forecast_cond_channels(k), base, time_embedding=False)
    weights = Path(run_dir) / "deterministic.safetensors" if run_dir is not None else None
    if weights is not None and weights.is_file():
        try:
            network.load_state_dict(load_file(str(weights)))
        except (RuntimeError, OSError) as exc:
            raise CheckpointError(f"{weights}: cannot be loaded into the deterministic UNet ({exc})") from exc
        return network.eval()
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)

    def step(index: int) -> float:
        batch = batches()
        output = network(batch["x0"] * 0, None, batch["cond"])
        loss = ((output - batch["x0"]) ** 2 * batch["valid"]).sum() / batch["valid"].sum().clamp_min(1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    network.train()
    trainer = Trainer(
        network, optimizer, steps=steps, max_seconds=max_seconds, progress=progress, desc="deterministic UNet"
    )
    result = trainer.run(step)
    if weights is not None:
        weights.parent.mkdir(parents=True, exist_ok=True)
        write_safetensors(weights, network.state_dict())
        info = {"steps": result.steps_done, "seconds": result.seconds, "lr": lr, "base": base, "k": k}
        write_json(weights.with_suffix(".json"), info)
    return network.eval()


def deterministic_forecast(
    network: torch.nn.Module, history: np.ndarray, static: np.ndarray, leads: list[int], scales: list[float]
) -> np.ndarray:
    """Forecasts ``[L, H, W]`` (standardized) of the deterministic UNet (``scales`` as in training)."""
    history_t = torch.from_numpy(np.asarray(history, np.float32))[None].expand(len(leads), -1, -1, -1)
    static_t = torch.from_numpy(static)[None].expand(len(leads), -1, -1, -1)
    cond = forecast_condition(history_t, torch.tensor(leads), static_t)
    with torch.no_grad():
        change = network(torch.zeros(len(leads), 1, *history_t.shape[-2:]), None, cond)[:, 0]
    return (history_t[:, -1] + torch.tensor([scales[lead - 1] for lead in leads])[:, None, None] * change).numpy()
