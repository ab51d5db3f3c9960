"""RFFM reliable feature fusion: blend query prototypes into support features inside the mask."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def min_max_normalise(x: torch.Tensor) -> torch.Tensor:
    """(B, h, w) -> per-image min-max normalised; a constant map becomes 0."""
    flat = x.flatten(1)
    lo = flat.min(1, keepdim=True).values
    rng = flat.max(1, keepdim=True).values - lo
    rng = torch.where(rng == 0, torch.ones_like(rng), rng)
    return ((flat - lo) / rng).view_as(x)


def fuse_support(
    query: torch.Tensor,
    support: torch.Tensor,
    prior: torch.Tensor,
    masks: torch.Tensor,
    weight: float,
    threshold: float,
    normalise: bool,
) -> torch.Tensor:
    """Blend a query prototype into support features where the support mask is set.

    query: (B, C, h, w); support: (B or 1, K, C, h, w); prior: (B, g, g) query prior;
    masks: (B or 1, K, H, W) support masks. The prototype is the mean of query features weighted by
    P' over pixels with P' > threshold, P' = prior resized bilinear to (h, w), min-max
    normalised when ``normalise``. Items with no reliable pixel keep their support unchanged.
    Returns (B, K, C, h, w): (1 - weight) * support + weight * prototype inside the mask.
    """
    h, w = query.shape[-2:]
    p = F.interpolate(prior.unsqueeze(1), (h, w), mode="bilinear", align_corners=False).squeeze(1)
    if normalise:
        p = min_max_normalise(p)
    reliable = (p > threshold).to(query.dtype)  # (B, h, w)
    count = reliable.sum((1, 2))  # (B,)
    proto = (query * (p * reliable).unsqueeze(1)).sum((2, 3)) / count.clamp(min=1).unsqueeze(1)  # (B, C)
    b = query.shape[0]
    bm, k = masks.shape[:2]  # bm = b, or 1 for a support set shared by every query
    inside = F.interpolate(masks.flatten(0, 1).unsqueeze(1).float(), (h, w), mode="bilinear", align_corners=False)
    inside = (inside > 0).view(bm, k, 1, h, w) & (count > 0).view(b, 1, 1, 1, 1)
    blended = (1.0 - weight) * support + weight * proto.view(b, 1, -1, 1, 1)
    return torch.where(inside, blended, support)
