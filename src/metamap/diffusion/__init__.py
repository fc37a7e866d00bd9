"""Denoising diffusion for gridded fields: schedules, objective, samplers, training.

The network (``metamap.nn.unet.UNet2d`` or any module ``(x, t, cond) -> output``)
and the noise schedule are separate objects; ``sample`` is the small loop
that joins them. Fields are standardized ``[B, C, H, W]`` float32 tensors,
never clipped to an image range.
"""

from metamap.diffusion.objective import diffusion_loss, variational_bound
from metamap.diffusion.samplers import SAMPLERS, sample
from metamap.diffusion.schedules import NoiseSchedule

__all__ = ["SAMPLERS", "NoiseSchedule", "diffusion_loss", "sample", "variational_bound"]
