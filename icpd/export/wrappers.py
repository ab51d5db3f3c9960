"""Export wrappers with fixed, named signatures (one per graph).

- ``PreprocessGraph``: pixels (B, H, W, 3) uint8 RGB -> images (B, 3, S, S) float32, bilinear
  resize (half-pixel centres, no antialias) and the preset's normalisation.
- ``EncoderGraph``: images (B, 3, S, S) -> the L backbone maps + CLIP tokens.
- ``MatcherGraph``: query features (batch B) + one support set (K shots, no batch axis) +
  (15, D) class embeddings -> logits (B, 2, S, S) [+ query prior and prior pyramid].

Support inputs are per *level* (L backbone layers, then the CLIP grid): features (K, C, N),
pixel norms (K, N) and soft masks (K, N); they come precomputed from a support cache.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from icpd.config import Preset
from icpd.model.icpd_net import Features, ICPDNet, PreparedSupport


def preprocess_pixels(pixels: torch.Tensor, preset: Preset) -> torch.Tensor:
    """(B, H, W, 3) uint8 RGB -> (B, 3, S, S) normalised float32 (the same in every backend)."""
    x = pixels.permute(0, 3, 1, 2).to(torch.float32) / 255.0  # B H W C -> B C H W
    s = preset.image_size
    x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
    mean = torch.tensor(preset.mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(preset.std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def level_names(preset: Preset) -> list[str]:
    return [f"layer{i:02d}" for i in range(preset.num_layers)] + ["clip"]


def encoder_output_names(preset: Preset) -> list[str]:
    return [f"feat_{n}" for n in level_names(preset)]


def matcher_input_names(preset: Preset, fusion: bool) -> list[str]:
    levels = level_names(preset)
    names = [f"query_{n}" for n in levels]
    names += [f"support_feat_{n}" for n in levels]
    names += [f"support_norm_{n}" for n in levels]
    names += [f"support_mask_{n}" for n in levels]
    names += ["class_embeddings"]
    if fusion:
        names += ["support_masks"]
    return names


MATCHER_OUTPUTS_ALL = ["logits", "query_prior", "pyramid_l4", "pyramid_l3", "pyramid_l2"]


class PreprocessGraph(nn.Module):
    def __init__(self, preset: Preset) -> None:
        super().__init__()
        self.preset = preset

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return preprocess_pixels(pixels, self.preset)


class EncoderGraph(nn.Module):
    def __init__(self, model: ICPDNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.model.encode_unchecked(images).as_list()


class MatcherGraph(nn.Module):
    """Positional inputs in ``matcher_input_names`` order."""

    def __init__(self, model: ICPDNet, all_outputs: bool = False, rank: str = "distances") -> None:
        super().__init__()
        self.model = model
        self.all_outputs = all_outputs
        self.rank = rank  # "distances" / "features": through an op (export, CUDA); "eager": topk (torch on CPU)
        self.levels = model.preset.num_layers + 1
        self.fusion = model.preset.fusion_weight > 0

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        n = self.levels
        query = Features.from_list(list(inputs[:n]))
        feats = [x.unsqueeze(0) for x in inputs[n : 2 * n]]  # one support set shared by the batch
        norms = [x.unsqueeze(0) for x in inputs[2 * n : 3 * n]]
        masks = [x.unsqueeze(0) for x in inputs[3 * n : 4 * n]]
        emb = inputs[4 * n]
        raw_masks = inputs[4 * n + 1].unsqueeze(0) if self.fusion else None
        g = self.model.preset.clip_grid
        clip = feats[-1].reshape(1, feats[-1].shape[1], -1, g, g).permute(0, 1, 3, 4, 2)  # 1 K D (g g) -> 1 K g g D
        prepared = PreparedSupport(features=feats, norms=norms, masks=masks, clip_tokens=clip)
        out = self.model.match_prepared(
            query,
            prepared,
            emb.unsqueeze(0).expand(query.batch, -1, -1),
            return_intermediates=self.all_outputs,
            support_masks=raw_masks,
            rank=self.rank,
            validate=False,
            support_priors=False,
        )
        if not self.all_outputs:
            return out
        return [out["logits"], out["query_prior"], *out["pyramid"]]
