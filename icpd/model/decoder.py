"""Light decoder over the prior pyramid (keys ``hpn_learner.*`` of the released checkpoints)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _block(in_channels: int, out_channels: tuple[int, ...], groups: int = 4) -> nn.Sequential:
    layers: list[nn.Module] = []
    for out in out_channels:
        layers += [nn.Conv2d(in_channels, out, 3, 1, 1), nn.GroupNorm(groups, out), nn.ReLU()]
        in_channels = out
    return nn.Sequential(*layers)


class Decoder(nn.Module):
    """Squeeze each stack (L4, L3, L2), mix coarse to fine, decode to 2-class logits.

    ``stack_channels`` = input channels of the (L4, L3, L2) stacks, e.g. (6, 15, 8).
    """

    def __init__(self, stack_channels: tuple[int, int, int]) -> None:
        super().__init__()
        c1, c2, c3 = 16, 64, 128
        self.encoder_layer4 = _block(stack_channels[0], (c1, c2, c3))
        self.encoder_layer3 = _block(stack_channels[1], (c1, c2, c3))
        self.encoder_layer2 = _block(stack_channels[2], (c1, c2, c3))
        self.encoder_layer4to3 = _block(c3, (c3, c3, c3))
        self.encoder_layer3to2 = _block(c3, (c3, c3, c3))
        self.decoder1 = nn.Sequential(nn.Conv2d(c3, c3, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(c3, c2, 3, padding=1), nn.ReLU())
        self.decoder2 = nn.Sequential(nn.Conv2d(c2, c2, 3, padding=1), nn.ReLU(), nn.Conv2d(c2, 2, 3, padding=1))

    def forward(self, pyramid: list[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        """pyramid = [L4 (B,c4,h/32,w/32), L3 (B,c3,h/16,w/16), L2 (B,c2,h/8,w/8)] -> (B, 2, *out_size)."""
        l4 = self.encoder_layer4(pyramid[0])
        l3 = self.encoder_layer3(pyramid[1])
        l2 = self.encoder_layer2(pyramid[2])
        x = F.interpolate(l4, l3.shape[-2:], mode="bilinear", align_corners=True) + l3
        x = self.encoder_layer4to3(x)
        x = F.interpolate(x, l2.shape[-2:], mode="bilinear", align_corners=True) + l2
        x = self.decoder1(self.encoder_layer3to2(x))
        x = F.interpolate(x, (x.shape[-2] * 2, x.shape[-1] * 2), mode="bilinear", align_corners=True)
        x = self.decoder2(x)
        return F.interpolate(x, out_size, mode="bilinear", align_corners=True)
