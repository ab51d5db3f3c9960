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

from icpd.artifacts.signature import MATCHER_OUTPUTS, MatcherSignature, encoder_output_names, level_names
from icpd.config import Preset, RankPriorForm
from icpd.model.icpd_net import Features, ICPDNet, PreparedSupport
from icpd.model.priors import rank_path

__all__ = ["MATCHER_OUTPUTS_ALL", "EncoderGraph", "MatcherGraph", "PreprocessGraph", "encoder_output_names",
           "level_names", "matcher_input_names", "preprocess_pixels"]


def preprocess_pixels(pixels: torch.Tensor, preset: Preset) -> torch.Tensor:
    """(B, H, W, 3) uint8 RGB -> (B, 3, S, S) normalised float32 (the same in every backend)."""
    x = pixels.permute(0, 3, 1, 2).to(torch.float32) / 255.0  # B H W C -> B C H W
    s = preset.image_size
    x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
    mean = torch.tensor(preset.mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(preset.std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def matcher_input_names(preset: Preset, fusion: bool | None = None) -> list[str]:
    """The matcher's input names in order (:class:`icpd.artifacts.signature.MatcherSignature`); ``fusion``
    defaults to the preset's."""
    sig = MatcherSignature.for_preset(preset)
    if fusion is not None and fusion != sig.fusion:
        sig = MatcherSignature(sig.levels, fusion)
    return sig.inputs


MATCHER_OUTPUTS_ALL = list(MATCHER_OUTPUTS)  # kept name: the matcher's outputs, in order


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
    """Positional inputs in :attr:`MatcherSignature.inputs` order -> logits (B, 2, S, S), or with
    ``all_outputs`` every output of :data:`~icpd.artifacts.signature.MATCHER_OUTPUTS` in order."""

    def __init__(self, model: ICPDNet, all_outputs: bool = False,
                 rank: RankPriorForm | str = RankPriorForm.TOPK) -> None:
        super().__init__()
        self.model = model
        self.all_outputs = all_outputs
        # a form: through the op that form exports (plugin: the CUDA kernel on CUDA tensors);
        # "eager": topk in PyTorch (torch on the CPU); see icpd.model.priors.rank_path
        self.rank = rank_path(rank)
        self.signature = MatcherSignature.for_preset(model.preset)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        x = self.signature.unpack(inputs)
        query = Features.from_list(x.query)
        feats = [f.unsqueeze(0) for f in x.features]  # one support set shared by the batch: K.. -> 1 K ..
        g = self.model.preset.clip_grid
        # 1 K D (g g) -> 1 K g g D
        clip = feats[-1].reshape(1, feats[-1].shape[1], -1, g, g).permute(0, 1, 3, 4, 2)
        prepared = PreparedSupport(features=feats, norms=[n.unsqueeze(0) for n in x.norms],
                                   masks=[m.unsqueeze(0) for m in x.masks], clip_tokens=clip)
        out = self.model.match_prepared(
            query,
            prepared,
            x.class_embeddings.unsqueeze(0).expand(query.batch, -1, -1),
            support_masks=None if x.raw_masks is None else x.raw_masks.unsqueeze(0),
            rank=self.rank,
            validate=False,
        )
        if not self.all_outputs:
            return out.logits
        return [out.logits, out.query_prior, *out.pyramid]
