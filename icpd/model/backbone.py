"""Frozen CNN pyramids: the 13 ResNet bottleneck maps (or 7 VGG-16 maps) the priors compare.

Module attribute names follow torchvision exactly, so the authors' ``backbone.*`` keys and
torchvision's ImageNet weight files load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import Bottleneck


class ResNetPyramid(nn.Module):
    """Bottleneck ResNet whose ``forward`` returns the outputs of every bottleneck of
    layer2..layer4, taken after the residual add and before the block's final ReLU.

    With ``layers=(3, 4, 6, 3)`` and ``width=64`` the parameters are exactly torchvision's
    ResNet-50 (without ``fc``): 4 + 6 + 3 = 13 maps of 512/1024/2048 channels at 1/8, 1/16, 1/32.
    """

    def __init__(self, layers: tuple[int, ...] = (3, 4, 6, 3), width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = width
        for stage, (blocks, stride) in enumerate(zip(layers, (1, 2, 2, 2)), start=1):
            planes = width * 2 ** (stage - 1)
            stage_blocks = []
            for b in range(blocks):
                downsample = None
                if b == 0 and (stride != 1 or inplanes != planes * Bottleneck.expansion):
                    downsample = nn.Sequential(
                        nn.Conv2d(inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
                        nn.BatchNorm2d(planes * Bottleneck.expansion),
                    )
                stage_blocks.append(Bottleneck(inplanes, planes, stride if b == 0 else 1, downsample))
                inplanes = planes * Bottleneck.expansion
            self.add_module(f"layer{stage}", nn.Sequential(*stage_blocks))
        self.out_channels = tuple(width * 2 ** (s - 1) * Bottleneck.expansion for s in (2, 3, 4))

    @staticmethod
    def _block(block: Bottleneck, x: torch.Tensor) -> torch.Tensor:
        """One bottleneck without its final ReLU (out-of-place ReLUs: the kept map survives)."""
        identity = x if block.downsample is None else block.downsample(x)
        out = F.relu(block.bn1(block.conv1(x)))
        out = F.relu(block.bn2(block.conv2(out)))
        return block.bn3(block.conv3(out)) + identity

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) normalised images -> list of (B, C_l, H/s_l, W/s_l), layer2..layer4 order."""
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        for block in self.layer1:
            x = F.relu(self._block(block, x))
        feats = []
        for stage in (self.layer2, self.layer3, self.layer4):
            for block in stage:
                x = self._block(block, x)
                feats.append(x)
                x = F.relu(x)
        return feats


# vgg16.features indices whose (pre-ReLU) outputs the authors use: conv4_1..4_3, conv5_1..5_3, pool5
VGG_FEATURE_IDS = (17, 19, 21, 24, 26, 28, 30)


class VGGPyramid(nn.Module):
    """torchvision VGG-16 ``features`` (keys ``features.N.*``); returns the 7 maps of ``VGG_FEATURE_IDS``."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import vgg16

        features = vgg16(weights=None).features[: VGG_FEATURE_IDS[-1] + 1]
        for m in features:
            if isinstance(m, nn.ReLU):
                m.inplace = False  # a kept conv output must not be overwritten by the next ReLU
        self.features = features
        self.out_channels = (512, 512, 512)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> 3 maps at 1/8, 3 at 1/16, 1 at 1/32 (all 512 channels)."""
        feats = []
        for idx, module in enumerate(self.features):
            x = module(x)
            if idx in VGG_FEATURE_IDS:
                feats.append(x)
        return feats
