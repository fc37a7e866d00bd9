"""Denoising diffusion for gridded fields: schedules, objective, samplers, training.

The network (``metamap.nn.unet.UNet2d`` or any module ``(x, t, cond) -> output``),
the noise schedule and the sampler's scheduler (its grid and stepping rule)
are separate objects; ``sample`` is the small loop that joins them. Fields are standardized ``[B, C, H, W]`` float32 tensors,
never clipped to an image range.
"""

from metamap.diffusion.objective import diffusion_loss, variational_bound
from metamap.diffusion.samplers import SAMPLERS, DDIMScheduler, DPMSolverScheduler, make_scheduler, sample
from metamap.diffusion.schedules import NoiseSchedule

__all__ = [
    "SAMPLERS",
    "DDIMScheduler",
    "DPMSolverScheduler",
    "NoiseSchedule",
    "diffusion_loss",
    "make_scheduler",
    "sample",
    "variational_bound",
]
