"""IPDM prior learner: CLIP text-image similarities (B, 15, g, g) -> class-agnostic prior (B, g, g)."""

from __future__ import annotations

import torch
from torch import nn


class PriorLearner(nn.Module):
    """Two stride-2 transposed convs up, three convs with two max-pools down, sigmoid.

    Submodule indices match the released ``priorlearner.*`` keys.
    """

    def __init__(self, in_channels: int = 15) -> None:
        super().__init__()
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(in_channels, 32, kernel_size=2, stride=2),
            nn.InstanceNorm2d(32),
            nn.ReLU(),
            nn.ConvTranspose2d(32, 16, kernel_size=2, stride=2),
            nn.InstanceNorm2d(16),
            nn.ReLU(),
        )
        self.downsample = nn.Sequential(
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.InstanceNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(32, 64, kernel_size=3, padding=1),
            nn.InstanceNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(64, 1, kernel_size=3, padding=1),
        )

    def forward(self, similarity: torch.Tensor) -> torch.Tensor:
        """(B, 15, g, g) -> (B, g, g) prior in (0, 1)."""
        return torch.sigmoid(self.downsample(self.upsample(similarity))).squeeze(1)
