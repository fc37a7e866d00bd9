"""The diffusers RePaint peer: ``diffusers.UNet2DModel`` + ``diffusers.RePaintScheduler``.

A comparison point for the geo benchmark, built from the library's own
parts rather than ours: a ``UNet2DModel`` sized to about the parameter count
of our :class:`metamap.nn.unet.UNet2d` (widths ``(c, 2c, 2c)``, one residual
block per level, no attention, ``c`` the multiple of 4 whose count is
nearest; GroupNorm with 8 groups, or 4 where ``c`` is not a multiple of 8),
trained with our :func:`metamap.training.diffusion.train_diffusion`
on the same batches (conditioning channels included, as extra input
channels), steps, schedule and prediction kind as our model, then
sampled with RePaint (Lugmayr et al. 2022, "RePaint: Inpainting using
Denoising Diffusion Probabilistic Models") through ``RePaintScheduler`` with
``clip_sample=False`` (fields are standardized, not images). The scheduler
wants a noise prediction; a v- or x0-network's output is converted to the
equivalent noise at every call (with the cosine schedule, ``abar`` at the
last step is 2e-9, where an eps-network's clean-field estimate is amplified
2e4 times: v-prediction avoids that, for the peer as for ours).

``UNet2DModel`` needs sides divisible by ``2 ** (levels - 1)``: fields are
reflect-padded at the bottom and right (33 x 49 -> 36 x 52) before every
network call, in training and sampling alike, and cropped back. diffusers is
in the ``bench`` extra and imported lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from metamap.diffusion.schedules import NoiseSchedule
from metamap.errors import ConfigError, DataError, ShapeError, describe
from metamap.nn.devices import check_generator, module_device
from metamap.seeding import seeded
from metamap.training.diffusion import TrainedDiffusion, train_diffusion

LEVELS = 3


def _diffusers() -> Any:
    """The ``diffusers`` module (ConfigError naming the extra when it is not installed)."""
    try:
        import diffusers
    except ImportError as exc:
        raise ConfigError(
            "the RePaint peer needs diffusers: pip install 'metamap[bench]' (or diffusers>=0.25)"
        ) from exc
    return diffusers


class PaddedUNet2DModel(nn.Module):
    """``diffusers.UNet2DModel`` behind our network interface:
    ``(x [B, C, H, W], t [B] in [0, 1], cond [B, cond_channels, H, W] or None) -> output [B, C, H, W]``.

    The conditioning (when ``cond_channels > 0``) is concatenated to ``x`` as
    input channels, as in our :class:`metamap.nn.unet.UNet2d`. Pads by
    reflection to sides divisible by ``2 ** (LEVELS - 1)``, feeds the discrete
    timestep ``t * n_steps`` and crops the output back.
    """

    def __init__(self, channels: int, width: int, n_steps: int, cond_channels: int = 0) -> None:
        super().__init__()
        diffusers = _diffusers()
        self.cond_channels = cond_channels
        self.unet = diffusers.UNet2DModel(
            in_channels=channels + cond_channels,
            out_channels=channels,
            layers_per_block=1,
            block_out_channels=(width, 2 * width, 2 * width),
            down_block_types=("DownBlock2D",) * LEVELS,
            up_block_types=("UpBlock2D",) * LEVELS,
            norm_num_groups=8 if width % 8 == 0 else 4,
            add_attention=False,
        )
        self.n_steps = n_steps
        self.factor = 2 ** (LEVELS - 1)

    def n_parameters(self) -> int:
        """Number of parameters (trainable or frozen, e.g. an EMA copy)."""
        return sum(p.numel() for p in self.parameters())

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Reflect-pad ``[B, C, H, W]`` at the bottom and right to sides divisible by the UNet's factor."""
        pad_h, pad_w = -x.shape[-2] % self.factor, -x.shape[-1] % self.factor
        return F.pad(x, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else x

    def forward_padded(self, inputs: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """The UNet's output on already padded ``inputs`` (the noisy field, then the conditioning channels)
        at integer ``timestep [B]``."""
        output: torch.Tensor = self.unet(inputs, timestep).sample
        return output

    def inputs(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """``x`` with the conditioning channels appended (ShapeError when they do not match the network)."""
        given = 0 if cond is None else cond.shape[1]
        if given != self.cond_channels or (cond is not None and cond.shape[-2:] != x.shape[-2:]):
            raise ShapeError(
                f"the RePaint peer takes {self.cond_channels} conditioning channels of x's size {tuple(x.shape[-2:])}; "
                f"got {describe(cond)}"
            )
        return x if cond is None else torch.cat([x, cond], dim=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        height, width = x.shape[-2:]
        return self.forward_padded(self.pad(self.inputs(x, cond)), t * self.n_steps)[..., :height, :width]


def matched_width(channels: int, reference_parameters: int, cond_channels: int = 0) -> tuple[int, int]:
    """The width ``c`` (a multiple of 4) whose peer has the parameter count nearest ``reference_parameters``,
    and that count."""
    best: tuple[int, int] | None = None
    for width in range(4, 257, 4):
        count = PaddedUNet2DModel(channels, width, 1000, cond_channels).n_parameters()
        if best is None or abs(count - reference_parameters) < abs(best[1] - reference_parameters):
            best = (width, count)
        if count > reference_parameters:
            break
    assert best is not None  # the loop runs at least once
    return best


@dataclass
class RepaintPeer:
    """A trained peer: its network (EMA weights), schedule and training record."""

    network: PaddedUNet2DModel
    trained: TrainedDiffusion

    def _eps(self, x: torch.Tensor, timestep: int, cond: torch.Tensor | None) -> torch.Tensor:
        """The noise prediction at padded ``x`` (``cond``: the padded conditioning channels, or None)."""
        t_index = torch.full((x.shape[0],), timestep, dtype=torch.long, device=x.device)
        output = self.network.forward_padded(x if cond is None else torch.cat([x, cond], dim=1), t_index)
        return self.trained.schedule.predict_eps(x, t_index, output, self.trained.prediction)

    @property
    def n_parameters(self) -> int:
        return self.network.n_parameters()

    @torch.no_grad()
    def inpaint(
        self,
        known: torch.Tensor,
        known_mask: torch.Tensor,
        cond: torch.Tensor | None = None,
        *,
        steps: int = 250,
        jump_length: int = 10,
        jump_n_sample: int = 10,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """RePaint samples ``[B, C, H, W]`` equal to ``known`` where ``known_mask`` (bool) is True.

        ``steps``, ``jump_length``, ``jump_n_sample`` and ``eta`` are
        ``RePaintScheduler``'s (the defaults are the RePaint pipeline's).
        ``known`` may hold NaN where the mask is False; ``cond [B, cond_channels,
        H, W]`` is the conditioning of a conditional peer (None for an
        unconditional one). An ensemble of M members is a batch of M. ``known``,
        ``known_mask`` and ``cond`` are moved to the
        network's device, where ``generator`` must live; the samples come back
        on it.
        """
        if known.ndim != 4 or known_mask.shape != known.shape or known_mask.dtype != torch.bool:
            raise ShapeError(
                f"known [B, C, H, W] and a bool known_mask of its shape expected; got {describe(known)}, "
                f"{describe(known_mask)}"
            )
        if not bool(torch.isfinite(known[known_mask]).all()):
            raise DataError("known has NaN/inf values where known_mask is True")
        device = module_device(self.network)
        check_generator(generator, device)
        known, known_mask = known.to(device), known_mask.to(device)
        self.network.inputs(known, cond)  # checks the conditioning against the network
        padded_cond = None if cond is None else self.network.pad(cond.to(device))
        schedule = self.trained.schedule
        scheduler = _diffusers().RePaintScheduler(
            num_train_timesteps=schedule.n_steps,
            trained_betas=schedule.betas.float().numpy(),
            eta=eta,
            clip_sample=False,
        )
        scheduler.set_timesteps(steps, jump_length=jump_length, jump_n_sample=jump_n_sample)
        filled = torch.where(known_mask, known, torch.zeros_like(known))
        image_known = self.network.pad(filled)
        mask = self.network.pad(known_mask.float())
        x = torch.randn(image_known.shape, generator=generator, device=device)
        t_last = int(scheduler.timesteps[0]) + 1
        for t in scheduler.timesteps.tolist():
            if t < t_last:
                x = scheduler.step(
                    self._eps(x, t, padded_cond), t, x, image_known, mask, generator=generator
                ).prev_sample
            else:
                x = scheduler.undo_step(x, t_last, generator=generator)
            t_last = t
        height, width = known.shape[-2:]
        return torch.where(known_mask, known, x[..., :height, :width])


def train_repaint_peer(
    batches: Iterable[dict[str, torch.Tensor]] | Callable[[], dict[str, torch.Tensor]],
    *,
    channels: int,
    reference_parameters: int,
    cond_channels: int = 0,
    schedule: NoiseSchedule,
    steps: int,
    lr: float = 2e-4,
    prediction: str = "v",
    seed: int = 0,
    run_dir: Path | None = None,
    progress: bool = True,
    max_seconds: float | None = None,
    **options: Any,
) -> RepaintPeer:
    """Train the peer on ``batches`` (dicts with ``"x0"``, optional ``"valid"``, and ``"cond"`` with
    ``cond_channels`` channels when that is not 0).

    ``reference_parameters`` is our UNet's count (``UNet2d.n_parameters()``);
    the rest are :func:`train_diffusion`'s arguments (use the same as for
    our model). The network's weights are drawn from ``seed``.
    """
    width, _ = matched_width(channels, reference_parameters, cond_channels)
    with seeded(seed):
        network = PaddedUNet2DModel(channels, width, schedule.n_steps, cond_channels)
    trained = train_diffusion(
        network,
        schedule,
        batches,
        steps=steps,
        lr=lr,
        prediction=prediction,
        seed=seed,
        run_dir=run_dir,
        progress=progress,
        max_seconds=max_seconds,
        **options,
    )
    if not isinstance(trained.model, PaddedUNet2DModel):  # pragma: no cover - train_diffusion keeps the class
        raise ConfigError(f"the peer's EMA network is a {type(trained.model).__name__}")
    return RepaintPeer(network=trained.model, trained=trained)
