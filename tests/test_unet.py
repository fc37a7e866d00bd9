"""UNet2d: odd non-square grids, any channels and conditioning, batch consistency, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metamap.errors import ConfigError, ShapeError
from metamap.nn.unet import UNet2d


def _net(**options) -> UNet2d:
    torch.manual_seed(0)
    net = UNet2d(**{"in_channels": 3, "base": 8, **options})
    nn.init.normal_(net.out.weight, std=0.1)  # the output layer starts at zero; make the output informative
    return net.eval()


@pytest.mark.parametrize("mults", [(1,), (1, 2), (1, 2, 2), (1, 2, 2, 2)])
def test_odd_non_square_grid_with_conditioning(mults):
    net = _net(out_channels=2, cond_channels=4, mults=mults)
    x, cond = torch.randn(2, 3, 33, 49), torch.randn(2, 4, 33, 49)
    out = net(x, torch.tensor([0.1, 0.9]), cond)
    assert out.shape == (2, 2, 33, 49) and torch.isfinite(out).all()


def test_batch_consistency():
    net = _net(cond_channels=1)
    x, cond, t = torch.randn(4, 3, 33, 49), torch.randn(4, 1, 33, 49), torch.rand(4)
    together = net(x, t, cond)
    alone = torch.cat([net(x[i : i + 1], t[i : i + 1], cond[i : i + 1]) for i in range(4)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_time_matters_only_with_a_time_embedding():
    x = torch.randn(2, 3, 9, 13)
    net = _net()
    assert not torch.allclose(net(x, torch.zeros(2)), net(x, torch.ones(2)))
    plain = _net(time_embedding=False)
    assert torch.equal(plain(x, torch.zeros(2)), plain(x, None))
    assert plain.n_parameters() < net.n_parameters()


def test_conditioning_changes_the_output_and_the_crop_keeps_the_grid():
    net = _net(cond_channels=2)
    x, t = torch.randn(1, 3, 7, 5), torch.rand(1)
    assert not torch.allclose(net(x, t, torch.zeros(1, 2, 7, 5)), net(x, t, torch.ones(1, 2, 7, 5)))


def test_every_parameter_gets_a_gradient_and_no_batchnorm():
    net = UNet2d(2, cond_channels=1, base=8, attention=True)
    nn.init.normal_(net.out.weight)
    net(torch.randn(2, 2, 11, 17), torch.rand(2), torch.randn(2, 1, 11, 17)).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


def test_bad_input_is_named():
    net = UNet2d(2, cond_channels=1, base=8)
    with pytest.raises(ShapeError, match=r"x \[B, 2, H, W\]"):
        net(torch.randn(1, 3, 8, 8), torch.rand(1), torch.randn(1, 1, 8, 8))
    with pytest.raises(ShapeError, match="cond"):
        net(torch.randn(1, 2, 8, 8), torch.rand(1))
    with pytest.raises(ShapeError, match="times"):
        net(torch.randn(1, 2, 8, 8), None, torch.randn(1, 1, 8, 8))
    with pytest.raises(ShapeError, match="cond_channels=0"):
        UNet2d(1, base=8)(torch.randn(1, 1, 8, 8), torch.rand(1), torch.randn(1, 1, 8, 8))
    with pytest.raises(ConfigError, match="in_channels"):
        UNet2d(0)
