"""Conv4: the four-block convolutional backbone of the few-shot literature.

Each block is conv 3x3 (``hidden`` channels) -> GroupNorm -> ReLU -> max-pool 2,
as in Vinyals et al. 2016, Finn et al. 2017 and Snell et al. 2017, with
GroupNorm in place of BatchNorm so that it runs under ``vmap`` (BatchNorm's
running statistics cannot update there) and behaves the same at train and
test time.
"""

from __future__ import annotations

import torch
from torch import nn


class Conv4(nn.Module):
    """Images ``[..., C, H, W]`` -> features ``[..., hidden * h * w]`` or logits ``[..., n_out]``.

    With ``n_out=None`` it is an embedding network (ProtoNets, Matching
    Networks); with ``n_out`` a linear head follows (MAML, ANIL). For 28x28
    inputs the embedding has ``hidden`` features (1x1 spatial);
    ``image_size`` is the side of the square input.
    """

    def __init__(
        self,
        in_channels: int = 1,
        hidden: int = 64,
        n_out: int | None = None,
        image_size: int = 28,
        groups: int = 1,
    ) -> None:
        super().__init__()
        blocks = []
        channels = in_channels
        for _ in range(4):
            blocks += [
                nn.Conv2d(channels, hidden, 3, padding=1),
                nn.GroupNorm(groups, hidden),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            channels = hidden
        self.features = nn.Sequential(*blocks)
        side = image_size
        for _ in range(4):
            side //= 2
        self.embedding_dim = hidden * side * side
        self.head = nn.Linear(self.embedding_dim, n_out) if n_out is not None else None
        self.n_out = n_out
        self.head_prefix = "head"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-3]
        z: torch.Tensor = self.features(x.reshape(-1, *x.shape[-3:])).flatten(1)
        if self.head is not None:
            z = self.head(z)
        return z.reshape(*lead, z.shape[-1])
