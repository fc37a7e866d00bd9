"""Training a diffusion model: Adam on the simplified objective, an EMA copy for sampling, resumable.

``train_diffusion`` gives its step (and the EMA update) to
:class:`~metamap.training.trainer.Trainer`; checkpoints go through
:mod:`metamap.training.checkpoint` (safetensors + JSON, atomic), so an
interrupted run resumes where it stopped. The result,
:class:`TrainedDiffusion`, holds the EMA network that sampling uses and
saves to / loads from a folder (``weights.safetensors`` + ``diffusion.json``
with the network's architecture, so ``load`` rebuilds it).
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from torch import nn

from metamap.diffusion.objective import diffusion_loss, variational_bound
from metamap.diffusion.samplers import sample
from metamap.diffusion.schedules import NoiseSchedule, check_prediction
from metamap.errors import CheckpointError, ConfigError, DataError
from metamap.nn.devices import module_device
from metamap.nn.unet import UNet2d
from metamap.report import write_json, write_safetensors
from metamap.training.run_folder import claim_run_folder
from metamap.training.trainer import Trainer

WEIGHTS = "weights.safetensors"
CONFIG = "diffusion.json"
FORMAT_VERSION = 1

Batch = dict[str, torch.Tensor]


@dataclass
class TrainedDiffusion:
    """A trained model: ``model`` (the EMA network, eval mode), its ``schedule`` and ``prediction`` kind.

    ``losses`` is the training loss per step (all runs of a resumed
    training), ``seconds`` the wall time spent training.
    """

    model: nn.Module
    schedule: NoiseSchedule
    prediction: str
    step: int = 0
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def sample(self, shape: tuple[int, int, int, int], **options: Any) -> torch.Tensor:
        """Fields ``[B, C, H, W]`` from :func:`metamap.diffusion.samplers.sample` (same options)."""
        return sample(self.model, self.schedule, shape, prediction=self.prediction, **options)

    def variational_bound(self, x0: torch.Tensor, **options: Any) -> torch.Tensor:
        """Negative ELBO ``[B]`` in nats per valid dimension (see :func:`variational_bound`)."""
        return variational_bound(self.model, self.schedule, x0, prediction=self.prediction, **options)

    def save(self, path: Path) -> None:
        """Write ``path/weights.safetensors`` and ``path/diffusion.json`` (each atomically)."""
        config = getattr(self.model, "config", None)
        if not isinstance(self.model, UNet2d) or config is None:
            raise ConfigError(f"save supports UNet2d networks only; got {type(self.model).__name__}")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        write_safetensors(path / WEIGHTS, self.model.state_dict())
        meta = {
            "format_version": FORMAT_VERSION,
            "network": {"class": "UNet2d", "config": config},
            "schedule": self.schedule.config,
            "prediction": self.prediction,
            "step": self.step,
            "seconds": self.seconds,
            "losses": self.losses,
        }
        write_json(path / CONFIG, meta)

    @classmethod
    def load(cls, path: Path, device: torch.device | str = "cpu") -> TrainedDiffusion:
        """Rebuild a model written by :meth:`save`, its network on ``device``."""
        path = Path(path)
        if not (path / WEIGHTS).is_file() or not (path / CONFIG).is_file():
            raise CheckpointError(f"{path} is not a saved diffusion model: expected {WEIGHTS} and {CONFIG} in it")
        try:
            meta = json.loads((path / CONFIG).read_text())
            tensors = load_safetensors((path / WEIGHTS).read_bytes())
        except (json.JSONDecodeError, SafetensorError, OSError) as exc:
            raise CheckpointError(f"saved diffusion model {path} is corrupt: {exc}") from None
        if meta.get("format_version") != FORMAT_VERSION or meta.get("network", {}).get("class") != "UNet2d":
            raise CheckpointError(
                f"{path / CONFIG}: expected format_version {FORMAT_VERSION} and a UNet2d network; "
                f"got {meta.get('format_version')!r}, {meta.get('network', {}).get('class')!r}"
            )
        config = dict(meta["network"]["config"])
        config["mults"] = tuple(config["mults"])
        model = UNet2d(**config)
        try:
            model.load_state_dict(tensors)
        except RuntimeError as exc:
            raise CheckpointError(f"{path / WEIGHTS} does not fit the network in {CONFIG}: {exc}") from None
        model.eval()
        return cls(
            model=model.to(device),
            schedule=NoiseSchedule.from_config(meta["schedule"]),
            prediction=meta["prediction"],
            step=int(meta.get("step", 0)),
            losses=list(meta.get("losses", [])),
            seconds=float(meta.get("seconds", 0.0)),
        )


def train_diffusion(
    model: nn.Module,
    schedule: NoiseSchedule,
    batches: Iterable[Batch] | Callable[[], Batch],
    *,
    steps: int,
    lr: float = 2e-4,
    prediction: str = "eps",
    ema: float = 0.999,
    seed: int = 0,
    run_dir: Path | None = None,
    progress: bool = True,
    max_seconds: float | None = None,
    checkpoint_every: int = 500,
    log_every: int = 50,
    grad_clip: float = 1.0,
) -> TrainedDiffusion:
    """Train ``model`` for ``steps`` optimizer steps (or until ``max_seconds``) and return the EMA model.

    ``batches`` is an iterable of dicts (cycled when exhausted) or a
    zero-argument callable returning one; a dict holds ``"x0" [B, C, H, W]``
    and optionally ``"cond" [B, K, H, W]`` and ``"valid"`` (bool, shape of
    x0), moved to the model's device once per batch. Steps and noise come
    from a generator on the model's device seeded with ``seed``. The EMA
    decay is ``min(ema, (1 + step) / (10 + step))``. The loop is
    :class:`~metamap.training.trainer.Trainer`'s: Ctrl-C finishes the step,
    saves and raises TrainingInterrupted. With ``run_dir`` a checkpoint is
    written every ``checkpoint_every`` steps and at the end, the mean
    training loss of every ``log_every`` steps goes to its metrics log, and
    a rerun resumes from the latest checkpoint; the folder is held for the
    run (:func:`~metamap.training.run_folder.claim_run_folder` with
    ``resume=True``: a second process training into it is refused).
    """
    check_prediction(prediction)
    if steps < 1 or lr <= 0 or not 0 <= ema < 1 or log_every < 1:
        raise ConfigError(
            f"expected steps >= 1, lr > 0, 0 <= ema < 1, log_every >= 1; "
            f"got steps={steps}, lr={lr}, ema={ema}, log_every={log_every}"
        )
    with claim_run_folder(run_dir, resume=True, what="run_dir") if run_dir is not None else nullcontext():
        device = module_device(model)
        generator = torch.Generator(device=device).manual_seed(seed)
        ema_model = copy.deepcopy(model).eval().requires_grad_(False)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        run_config = {
            "schedule": schedule.config,
            "prediction": prediction,
            "lr": lr,
            "ema": ema,
            "seed": seed,
            "network": getattr(model, "config", type(model).__name__),
        }
        losses: list[float] = []  # per step, the runs before a resume included
        trainer = Trainer(
            nn.ModuleDict({"model": model, "ema": ema_model}),
            optimizer,
            steps=steps,
            max_seconds=max_seconds,
            generators={"train": generator},
            run_dir=run_dir,
            config=run_config,
            checkpoint_every=checkpoint_every,
            extra=lambda: {"losses": losses},
            progress=progress,
            desc="diffusion training",
            leave=False,
        )
        if run_dir is not None:
            saved = trainer.resume(run_dir, lambda saved, folder: _check_config(saved, run_config, Path(run_dir)))
            losses = [float(x) for x in (saved or {}).get("losses", [])]
        source = _batch_source(batches)

        def step(index: int) -> float:
            batch = {name: value.to(device) for name, value in next(source).items()}
            loss = diffusion_loss(
                model,
                schedule,
                batch["x0"],
                cond=batch.get("cond"),
                valid=batch.get("valid"),
                prediction=prediction,
                generator=generator,
            )
            value = loss.item()
            if not math.isfinite(value):
                raise DataError(f"the training loss became {value} at step {index}; check the data and lr={lr}")
            optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            _ema_update(ema_model, model, min(ema, (1 + index) / (10 + index)))
            losses.append(value)
            return value

        def record(steps_done: int, loss: float) -> dict[str, float] | None:
            if steps_done % log_every and steps_done < steps:
                return None
            window = losses[-(steps_done % log_every or log_every) :]
            return {"train_loss": sum(window) / len(window)}

        model.train()
        result = trainer.run(step, record)
        model.eval()
        return TrainedDiffusion(
            ema_model, schedule, prediction, step=result.final_step, losses=losses, seconds=result.total_seconds
        )


@torch.no_grad()
def _ema_update(ema_model: nn.Module, model: nn.Module, decay: float) -> None:
    ema_params: list[torch.Tensor] = list(ema_model.parameters())
    params = [p.detach() for p in model.parameters()]
    torch._foreach_lerp_(ema_params, params, 1 - decay)
    for e, b in zip(ema_model.buffers(), model.buffers()):
        e.copy_(b)


def _batch_source(batches: Iterable[Batch] | Callable[[], Batch]) -> Iterator[Batch]:
    """An endless stream of checked batches: a callable is called, a re-iterable is cycled."""
    if isinstance(batches, Iterator):
        return _one_shot(batches)
    if isinstance(batches, Iterable):
        return _cycle(batches)
    if callable(batches):
        return (_checked(batches()) for _ in itertools.repeat(None))
    raise ConfigError(f"batches must be an iterable of dicts or a callable; got {type(batches).__name__}")


def _one_shot(batches: Iterator[Batch]) -> Iterator[Batch]:
    for batch in batches:
        yield _checked(batch)
    raise DataError("the batches iterator ran out before training finished; pass a list or a callable")


def _cycle(batches: Iterable[Batch]) -> Iterator[Batch]:
    while True:
        count = 0
        for batch in batches:
            count += 1
            yield _checked(batch)
        if count == 0:
            raise DataError("the batches iterable yielded nothing")


def _checked(batch: Any) -> Batch:
    if not isinstance(batch, dict) or "x0" not in batch:
        raise DataError(
            f"each batch must be a dict with key 'x0' (and optional 'cond', 'valid'); got {type(batch).__name__}"
        )
    return batch


def _check_config(saved: dict[str, Any], run_config: dict[str, Any], run_dir: Path) -> None:
    """CheckpointError unless the checkpoint in ``run_dir`` was written with ``run_config``."""
    if saved != json.loads(json.dumps(run_config)):
        raise CheckpointError(
            f"{run_dir} holds a run with another configuration ({saved}); expected {run_config}: use a fresh run_dir"
        )
