"""CLIP vision tower (open_clip ``VisionTransformer``) and its dense token grid."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def build_clip_visual(clip_config: dict[str, Any]) -> nn.Module:
    """Build an open_clip vision tower from a model config (no weights, no network)."""
    from open_clip.model import _build_vision_tower

    return _build_vision_tower(
        clip_config["embed_dim"], clip_config["vision_cfg"], quick_gelu=clip_config.get("quick_gelu", False)
    )


def clip_tokens(visual: nn.Module, images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, H, W) normalised images -> (B, g, g, D) projected patch tokens.

    Images are resized to ``size`` (bilinear, antialias), then conv1, class token, positional
    embedding, ln_pre, transformer, ln_post; the class token is dropped and tokens are
    multiplied by ``proj``.
    """
    b = images.shape[0]
    x = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    x = visual.conv1(x)  # B W g g
    g = x.shape[-1]
    x = x.flatten(2).transpose(1, 2)  # B W g g -> B (g g) W
    cls = visual.class_embedding.to(x.dtype).expand(b, 1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    x = visual.ln_pre(visual.patch_dropout(x))
    x = visual.ln_post(visual.transformer(x))
    tokens = x[:, 1:] @ visual.proj  # B (g g) D
    return tokens.reshape(b, g, g, -1)
