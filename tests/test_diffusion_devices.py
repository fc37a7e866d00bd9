"""Noise is drawn where the network lives: a generator on another device is refused with one clear line."""

from __future__ import annotations

import pytest
import torch

from metamap.diffusion.objective import diffusion_loss, variational_bound
from metamap.diffusion.samplers import sample
from metamap.diffusion.schedules import NoiseSchedule
from metamap.errors import ConfigError
from metamap.nn.devices import check_generator, module_device
from metamap.nn.unet import UNet2d


def _meta_unet() -> UNet2d:
    """A network whose parameters live on the meta device: anything but the CPU, without a GPU."""
    with torch.device("meta"):
        return UNet2d(in_channels=1, out_channels=1, base=8, mults=(1,))


def test_module_device_is_where_the_parameters_are():
    assert module_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert module_device(_meta_unet()).type == "meta"
    assert module_device(torch.nn.Identity(), default=torch.device("meta")).type == "meta"


def test_check_generator():
    cpu = torch.Generator()
    check_generator(cpu, torch.device("cpu"))
    check_generator(None, torch.device("meta"))
    with pytest.raises(ConfigError, match="lives on cpu, the model on cuda:1"):
        check_generator(cpu, torch.device("cuda", 1))


@pytest.mark.parametrize(
    "call",
    [
        lambda model, schedule, gen: sample(model, schedule, (2, 1, 8, 8), steps=2, generator=gen),
        lambda model, schedule, gen: diffusion_loss(model, schedule, torch.zeros(2, 1, 8, 8), generator=gen),
        lambda model, schedule, gen: variational_bound(model, schedule, torch.zeros(2, 1, 8, 8), generator=gen),
    ],
    ids=["sample", "diffusion_loss", "variational_bound"],
)
def test_a_cpu_generator_is_refused_for_a_model_elsewhere(call):
    with pytest.raises(ConfigError, match="random generator lives on cpu, the model on meta"):
        call(_meta_unet(), NoiseSchedule.cosine(10), torch.Generator().manual_seed(0))
