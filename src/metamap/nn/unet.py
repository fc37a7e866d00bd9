"""A small UNet for 2-D fields of any size, channel count and conditioning.

The network of Ho et al. 2020 ("Denoising Diffusion Probabilistic Models",
appendix B), cut down for small grids and CPUs: one residual block per level,
GroupNorm (never BatchNorm), a sinusoidal embedding of the continuous
diffusion time added inside every residual block, stride-2 convolutions down,
a convolution at the coarse level followed by nearest-neighbour upsampling up
(a quarter of the cost of convolving after upsampling), and skip connections
by concatenation. Self-attention at the coarsest level is
optional and off by default.

Fields are not images: inputs are standardized values of any range, and the
grid may be non-square with odd sides. The input is padded (edge replication)
to a multiple of ``2 ** (len(mults) - 1)`` and the output cropped back, so
``forward`` maps ``[B, C, H, W]`` to ``[B, C_out, H, W]`` for any ``H, W``.
Conditioning channels (masks, known values, previous time steps, static
fields) are concatenated to the input.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from metamap.errors import ConfigError, ShapeError, describe


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(8 if channels % 8 == 0 else 1, channels)


def timestep_embedding(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """Sinusoidal features ``[B, dim]`` of continuous times ``t [B]`` in [0, 1] (times ``scale``)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = (t.float() * scale)[:, None] * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv3x3 (+ time embedding) -> GroupNorm -> SiLU -> conv3x3, plus a skip."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int | None) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(in_ch), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch) if emb_dim else None
        self.norm2, self.conv2 = _norm(out_ch), nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
        h: torch.Tensor = self.conv1(F.silu(self.norm1(x)))
        if self.emb is not None and emb is not None:
            h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        skip: torch.Tensor = self.skip(x)
        return h + skip


class SelfAttention(nn.Module):
    """Single-head self-attention over the pixels of a feature map, with a residual connection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        a = F.scaled_dot_product_attention(q, k, v)
        out: torch.Tensor = self.out(a.transpose(-1, -2).reshape(b, c, h, w))
        return x + out


class UNet2d(nn.Module):
    """Fields ``x [B, in_channels, H, W]``, times ``t [B]`` in [0, 1], ``cond [B, cond_channels, H, W]``
    -> ``[B, out_channels, H, W]``.

    ``base`` is the width of the first level and ``mults`` the width multiple
    of each level (``len(mults) - 1`` downsamplings). With
    ``time_embedding=False`` the network ignores ``t`` (a deterministic
    regression UNet of the same widths). ``config`` holds the constructor
    arguments (JSON-able) so that checkpoints can rebuild the network.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        cond_channels: int = 0,
        base: int = 32,
        mults: tuple[int, ...] = (1, 2, 2),
        time_embedding: bool = True,
        attention: bool = False,
    ) -> None:
        super().__init__()
        if in_channels < 1 or cond_channels < 0 or base < 1 or not mults or min(mults) < 1:
            raise ConfigError(
                f"UNet2d expects in_channels >= 1, cond_channels >= 0, base >= 1 and positive mults; "
                f"got in_channels={in_channels}, cond_channels={cond_channels}, base={base}, mults={mults}"
            )
        out_channels = in_channels if out_channels is None else out_channels
        self.config: dict[str, Any] = {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "cond_channels": cond_channels,
            "base": base,
            "mults": list(mults),
            "time_embedding": time_embedding,
            "attention": attention,
        }
        self.in_channels, self.out_channels, self.cond_channels = in_channels, out_channels, cond_channels
        self.factor = 2 ** (len(mults) - 1)
        widths = [base * m for m in mults]
        emb_dim = 4 * base if time_embedding else None
        self.base = base
        self.time_mlp = (
            nn.Sequential(nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)) if emb_dim else None
        )
        self.inp = nn.Conv2d(in_channels + cond_channels, widths[0], 3, padding=1)
        self.enc = nn.ModuleList()
        self.down = nn.ModuleList()
        prev = widths[0]
        for i, w in enumerate(widths):
            self.enc.append(ResBlock(prev, w, emb_dim))
            if i < len(widths) - 1:
                self.down.append(nn.Conv2d(w, w, 3, stride=2, padding=1))
            prev = w
        self.mid = ResBlock(prev, prev, emb_dim)
        self.attn = SelfAttention(prev) if attention else None
        self.dec = nn.ModuleList(ResBlock(2 * w, w, emb_dim) for w in widths)
        self.up = nn.ModuleList(nn.Conv2d(widths[i], widths[i - 1], 3, padding=1) for i in range(1, len(widths)))
        self.out_norm = _norm(widths[0])
        self.out = nn.Conv2d(widths[0], out_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        assert self.out.bias is not None  # built with the default bias=True
        nn.init.zeros_(self.out.bias)

    def n_parameters(self) -> int:
        """Number of parameters (trainable or frozen, e.g. an EMA copy)."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None, cond: torch.Tensor | None = None) -> torch.Tensor:
        self._check(x, t, cond)
        height, width = x.shape[-2:]
        h = x if cond is None else torch.cat([x, cond], dim=1)
        pad_h, pad_w = -height % self.factor, -width % self.factor
        if pad_h or pad_w:
            h = F.pad(h, (0, pad_w, 0, pad_h), mode="replicate")
        emb = None
        if self.time_mlp is not None:
            assert t is not None  # _check requires t when the network embeds time
            emb = self.time_mlp(timestep_embedding(t, self.base))
        h = self.inp(h)
        skips = []
        for i, block in enumerate(self.enc):
            h = block(h, emb)
            skips.append(h)
            if i < len(self.down):
                h = self.down[i](h)
        h = self.mid(h, emb)
        if self.attn is not None:
            h = self.attn(h)
        for i in reversed(range(len(self.dec))):
            h = self.dec[i](torch.cat([h, skips[i]], dim=1), emb)
            if i > 0:
                h = F.interpolate(self.up[i - 1](h), size=skips[i - 1].shape[-2:], mode="nearest")
        out: torch.Tensor = self.out(F.silu(self.out_norm(h)))
        return out[..., :height, :width]

    def _check(self, x: torch.Tensor, t: torch.Tensor | None, cond: torch.Tensor | None) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ShapeError(f"UNet2d expects x [B, {self.in_channels}, H, W]; got {describe(x)}")
        if self.time_mlp is not None and (t is None or t.shape != (x.shape[0],)):
            raise ShapeError(f"UNet2d expects times t [{x.shape[0]}] in [0, 1]; got {describe(t)}")
        if self.cond_channels:
            expected = (x.shape[0], self.cond_channels, *x.shape[-2:])
            if cond is None or tuple(cond.shape) != expected:
                raise ShapeError(f"UNet2d expects cond {list(expected)}; got {describe(cond)}")
        elif cond is not None:
            raise ShapeError(f"UNet2d was built with cond_channels=0 but got cond {describe(cond)}")
