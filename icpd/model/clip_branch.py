"""CLIP vision tower (open_clip ``VisionTransformer``) and its dense token grid."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import nn


def build_clip_visual(clip_config: dict[str, Any]) -> nn.Module:
    """Build an open_clip vision tower from a model config (no weights, no network)."""
    from open_clip.model import _build_vision_tower

    return _build_vision_tower(
        clip_config["embed_dim"], clip_config["vision_cfg"], quick_gelu=clip_config.get("quick_gelu", False)
    )


def clip_tokens(visual: nn.Module, images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, H, W) normalised images -> (B, g, g, D) projected patch tokens.

    Images are resized to ``size`` (bilinear, antialias: :func:`resize_antialias`), then conv1, class token, positional
    embedding, ln_pre, transformer, ln_post; the class token is dropped and tokens are
    multiplied by ``proj``.
    """
    b = images.shape[0]
    x = resize_antialias(images, size)
    x = visual.conv1(x)  # B W g g
    g = x.shape[-1]
    x = x.flatten(2).transpose(1, 2)  # B W g g -> B (g g) W
    cls = visual.class_embedding.to(x.dtype).expand(b, 1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    x = visual.ln_pre(visual.patch_dropout(x))
    x = visual.ln_post(visual.transformer(x))
    tokens = x[:, 1:] @ visual.proj  # B (g g) D
    return tokens.reshape(b, g, g, -1)


@lru_cache(maxsize=16)
def antialias_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float32 weights of PyTorch's 1-D bilinear antialiased resize (align_corners=False).

    Computed in float32 in the order of ATen's CPU kernel (``_compute_weights_aa``), so the rows
    are bit-identical to the weights ``F.interpolate(..., antialias=True)`` applies (a test checks
    this against its output on an identity matrix). Plain numpy: export traces no op here, the
    matrix becomes a constant of the graph.
    """
    f32 = np.float32
    scale = f32(n_in) / f32(n_out)
    support = scale if scale >= 1.0 else f32(1.0)  # interp_size / 2 * scale, interp_size = 2
    invscale = f32(1.0) / scale if scale >= 1.0 else f32(1.0)
    weights = np.zeros((n_out, n_in), dtype=f32)
    for i in range(n_out):
        center = f32(float(scale) * (i + 0.5))
        xmin = max(int(float(f32(center - support)) + 0.5), 0)
        xsize = min(int(float(f32(center + support)) + 0.5), n_in) - xmin
        w = [_triangle(f32((float(f32(j + xmin) - center) + 0.5) * float(invscale))) for j in range(xsize)]
        total = f32(0.0)
        for v in w:
            total = f32(total + v)
        if total != 0:
            weights[i, xmin : xmin + xsize] = [f32(v / total) for v in w]
    return weights


def _triangle(x: np.float32) -> np.float32:
    x = abs(x)
    return np.float32(1.0 - float(x)) if x < 1.0 else np.float32(0.0)


def resize_antialias(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, size, size): bilinear, antialias, half-pixel centres, as
    ``F.interpolate(..., mode="bilinear", align_corners=False, antialias=True)``.

    Written as two matrix products with the kernel's own weights (:func:`antialias_weights`):
    TensorRT's ONNX parser has no antialiased Resize, and a MatMul with a constant is something
    every backend runs. Equal to ``F.interpolate`` up to float32 summation order (~1 ulp).
    """
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images  # the antialiased resize to the same size is the identity
    rows = torch.from_numpy(antialias_weights(h, size)).to(images.device, images.dtype)  # size H
    cols = torch.from_numpy(antialias_weights(w, size)).to(images.device, images.dtype)  # size W
    return torch.matmul(torch.matmul(rows, images), cols.transpose(0, 1))  # B C H W -> B C size size
