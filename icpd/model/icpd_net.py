"""ICPD-Net assembly: encoder (once per image) and matcher (once per class). No math of its own."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from icpd.config import Preset, get_preset
from icpd.model import checks
from icpd.model.backbone import ResNetPyramid, VGGPyramid
from icpd.model.clip_branch import build_clip_visual, clip_tokens
from icpd.model.decoder import Decoder
from icpd.model.fusion import fuse_support
from icpd.model.prior_learner import PriorLearner
from icpd.model.priors import pair_priors, resize_masks, text_similarity


@dataclass
class Features:
    """What the encoder computes for a batch of images; nothing class- or support-specific.

    layers: backbone maps, pyramid order, each (N, C_l, h_l, w_l); clip: (N, g, g, D) tokens.
    """

    layers: list[torch.Tensor]
    clip: torch.Tensor

    @property
    def batch(self) -> int:
        return self.clip.shape[0]

    def as_list(self) -> list[torch.Tensor]:
        return [*self.layers, self.clip]

    @classmethod
    def from_list(cls, tensors: list[torch.Tensor]) -> Features:
        return cls(layers=list(tensors[:-1]), clip=tensors[-1])


@dataclass
class PreparedSupport:
    """Support-only tensors the matcher needs, computed once per support set.

    Level l < L is backbone layer l, the last level is the CLIP token grid:
    features[l] (B, K, C_l, N_l), norms[l] (B, K, N_l) pixel L2 norms, masks[l] (B, K, N_l)
    soft masks at that level (bilinear, align_corners=True), clip_tokens (B, K, g, g, D).
    """

    features: list[torch.Tensor]
    norms: list[torch.Tensor]
    masks: list[torch.Tensor]
    clip_tokens: torch.Tensor

    @property
    def shots(self) -> int:
        return self.clip_tokens.shape[1]


@dataclass
class MatchOutput:
    """What ``ICPDNet.match_prepared`` computes for B queries.

    logits (B, 2, S, S); query_prior (B, g, g); pyramid [L4, L3, L2] of the prior pyramid, each
    (B, C, h, w); support_priors (B or 1, K, g, g) and prior_loss (a scalar) only when asked for
    (training).
    """

    logits: torch.Tensor
    query_prior: torch.Tensor
    pyramid: list[torch.Tensor]
    support_priors: torch.Tensor | None = None
    prior_loss: torch.Tensor | None = None

    def as_dict(self) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """The intermediates as ``forward(..., return_intermediates=True)`` returns them (set fields only)."""
        out: dict[str, torch.Tensor | list[torch.Tensor]] = {
            "logits": self.logits, "query_prior": self.query_prior, "pyramid": self.pyramid}
        if self.support_priors is not None:
            out["support_priors"] = self.support_priors
        if self.prior_loss is not None:
            out["prior_loss"] = self.prior_loss
        return out


class ICPDNet(nn.Module):
    """ICPD-Net. Attribute names follow the released checkpoints (``backbone``,
    ``cross_modal_visual_backbone``, ``priorlearner``, ``hpn_learner``)."""

    def __init__(self, preset: Preset | str = "paper") -> None:
        super().__init__()
        self.preset = get_preset(preset)
        p = self.preset
        self.backbone = VGGPyramid() if p.backbone == "vgg16" else ResNetPyramid(p.resnet_layers, p.resnet_width)
        clip_cfg = p.clip_config()
        p.check_clip(clip_cfg)
        self.cross_modal_visual_backbone = build_clip_visual(clip_cfg)
        self.priorlearner = PriorLearner(p.num_classes)
        n4, n3, n2 = p.stack_sizes
        self.hpn_learner = Decoder((2 * n4, 2 * n3 + 3, 2 * n2))
        for encoder in (self.backbone, self.cross_modal_visual_backbone):
            encoder.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> ICPDNet:
        """Encoders stay in eval mode (BatchNorm statistics, dropout) while training, trainable or not."""
        super().train(mode)
        self.backbone.eval()
        self.cross_modal_visual_backbone.eval()
        return self

    def set_encoders_trainable(self, trainable: bool) -> ICPDNet:
        """Let gradients reach the encoders (default: frozen, as the authors train).

        For the tiny preset only (``icpd.training.train``): it has no pretrained weights, and its
        random encoders give similarity priors too weak to segment anything; training them with
        the rest is the pretrained-free way to useful features. BatchNorm keeps its statistics.
        """
        for encoder in (self.backbone, self.cross_modal_visual_backbone):
            encoder.requires_grad_(trainable)
        return self

    @property
    def encoders_trainable(self) -> bool:
        return any(p.requires_grad for p in self.backbone.parameters())

    # -- encoder --------------------------------------------------------------------------------
    def encode(self, images: torch.Tensor) -> Features:
        """(N, 3, S, S) normalised images -> Features (13 backbone maps + CLIP token grid)."""
        checks.check_images("images", images, self.preset)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.encoders_trainable):
            return self.encode_unchecked(images)

    def encode_unchecked(self, images: torch.Tensor) -> Features:
        """``encode`` without input validation (export tracing: no data-dependent checks)."""
        layers = self.backbone(images)
        tokens = clip_tokens(self.cross_modal_visual_backbone, images, self.preset.clip_image_size)
        return Features(layers=layers, clip=tokens)

    # -- matcher --------------------------------------------------------------------------------
    def prepare_support(self, support: Features, support_masks: torch.Tensor) -> PreparedSupport:
        """Support features of B*K images (shot-major within each item) and (B, K, H, W) masks."""
        b, k = support_masks.shape[:2]
        checks.check_masks("support_masks", support_masks, b, k, (self.preset.image_size,) * 2)
        if support.batch != b * k:
            raise ValueError(
                f"support features: batch {support.batch} != B*K = {b}*{k} "
                f"from support_masks {tuple(support_masks.shape)}"
            )
        return prepare_support_tensors(support, support_masks)

    def match_prepared(
        self,
        query: Features,
        support: PreparedSupport,
        class_embeddings: torch.Tensor,
        *,
        support_masks: torch.Tensor | None = None,
        rank: str = "eager",
        validate: bool = True,
        support_priors: bool = False,
    ) -> MatchOutput:
        """Query features x prepared support x (B, 15, D) class embeddings -> :class:`MatchOutput`.

        The prepared support has batch B (one support set per query) or 1 (one support set, e.g.
        a cached class, shared by all B queries). ``support_masks`` (B or 1, K, S, S) is needed
        only for RFFM fusion and the prior loss. ``rank`` chooses how the rank prior is computed
        (see ``icpd.model.priors.pair_priors``: "eager", or an op for export/CUDA).
        ``validate=False`` skips input checks (export tracing); ``support_priors=True`` adds the
        support priors and, with ``support_masks``, the prior loss (training).
        """
        p = self.preset
        b = query.batch
        if validate:
            checks.check_class_embeddings("class_embeddings", class_embeddings, b, p)
        query_prior = self.priorlearner(text_similarity(query.clip, class_embeddings))  # (B, g, g)
        q_maps = [*query.layers, query.clip.permute(0, 3, 1, 2)]
        s_feats, s_norms = support.features, support.norms
        if p.fusion_weight > 0:
            if support_masks is None:
                raise ValueError("support_masks are required when the preset's fusion_weight > 0")
            s_feats, s_norms = self._fuse(q_maps, support, query_prior, support_masks)

        channels = []  # per level: (B, K, 2, h, w) = [cos, rank]
        for q, s, n, m in zip(q_maps, s_feats, s_norms, support.masks):
            h, w = q.shape[-2:]
            cos, ranks = pair_priors(q.flatten(2), s, m, n, rank=rank)
            channels.append(torch.stack([cos, ranks], dim=2).view(b, -1, 2, h, w))
        _, n3, n2 = p.stack_sizes
        backbone_levels, clip_level = channels[:-1], channels[-1]
        l2 = torch.cat(backbone_levels[:n2], dim=2)
        l3 = torch.cat([*backbone_levels[n2 : n2 + n3], clip_level], dim=2)
        l4 = torch.cat(backbone_levels[n2 + n3 :], dim=2)
        pyramid = [l4.mean(1), torch.cat([l3.mean(1), query_prior.unsqueeze(1)], dim=1), l2.mean(1)]
        size = (p.image_size, p.image_size)
        out = MatchOutput(logits=self.hpn_learner(pyramid, size), query_prior=query_prior, pyramid=pyramid)
        if not support_priors:  # inference: only the query side is wanted
            return out
        bs, k = support.clip_tokens.shape[:2]
        emb = class_embeddings[:bs].repeat_interleave(k, dim=0)
        sim = text_similarity(support.clip_tokens.flatten(0, 1), emb)
        out.support_priors = self.priorlearner(sim).view(bs, k, *query_prior.shape[-2:])
        if support_masks is not None:
            out.prior_loss = prior_loss(out.support_priors, support_masks)
        return out

    def _fuse(
        self, q_maps: list[torch.Tensor], support: PreparedSupport, prior: torch.Tensor, masks: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        p = self.preset
        feats, norms = [], []
        last = len(q_maps) - 1
        for level, (q, s) in enumerate(zip(q_maps, support.features)):
            h, w = q.shape[-2:]
            fused = fuse_support(
                q, s.view(*s.shape[:3], h, w), prior, masks, p.fusion_weight, p.fusion_threshold,
                normalise=level != last,
            ).flatten(3)
            feats.append(fused)
            norms.append(pixel_norms(fused))
        return feats, norms

    def match(
        self,
        query: Features,
        support: Features,
        support_masks: torch.Tensor,
        class_embeddings: torch.Tensor,
        *,
        return_intermediates: bool = False,
    ) -> torch.Tensor | dict[str, torch.Tensor | list[torch.Tensor]]:
        """Query features (B), support features (B*K, shot-major per item), masks (B, K, S, S) ->
        logits (B, 2, S, S), or with ``return_intermediates`` :meth:`MatchOutput.as_dict`."""
        prepared = self.prepare_support(support, support_masks)
        out = self.match_prepared(query, prepared, class_embeddings, support_masks=support_masks,
                                  support_priors=return_intermediates)
        return out.as_dict() if return_intermediates else out.logits

    def forward(
        self,
        query: torch.Tensor,
        support_images: torch.Tensor,
        support_masks: torch.Tensor,
        class_embeddings: torch.Tensor,
        *,
        return_intermediates: bool = False,
    ) -> torch.Tensor | dict[str, torch.Tensor | list[torch.Tensor]]:
        """query (B, 3, S, S), support_images (B, K, 3, S, S), support_masks (B, K, S, S) in {0, 1},
        class_embeddings (B, 15, D) with the target class first -> logits (B, 2, S, S), or a
        dict with logits, query_prior (B, g, g), support_priors (B, K, g, g), pyramid [L4, L3, L2]
        and prior_loss."""
        checks.check_images("query", query, self.preset)
        checks.check_images("support_images", support_images, self.preset, batch_dims=2)
        b, k = support_images.shape[:2]
        if b != query.shape[0]:
            raise ValueError(f"support_images: batch {b} != query batch {query.shape[0]}; "
                             "expected one support set per query")
        checks.check_masks("support_masks", support_masks, b, k, tuple(query.shape[-2:]))
        q = self.encode(query)
        s = self.encode(support_images.flatten(0, 1))
        return self.match(q, s, support_masks, class_embeddings, return_intermediates=return_intermediates)


def pixel_norms(features: torch.Tensor) -> torch.Tensor:
    """(B, K, C, N) -> (B, K, N) pixel L2 norms as sqrt(sum of squares), the same rounding as the
    reference's cdist: ``Tensor.norm`` rounds differently, and its square swapped near-tied support
    pixels at the top of the rank prior (parity: rank channel max diff 1.1e-2 -> 2e-4)."""
    return (features * features).sum(2).sqrt()


def prepare_support_tensors(support: Features, support_masks: torch.Tensor) -> PreparedSupport:
    """The support-only work of the matcher, unchecked: (B*K) features + (B, K, S, S) masks."""
    b, k = support_masks.shape[:2]
    maps = [*support.layers, support.clip.permute(0, 3, 1, 2)]  # N g g D -> N D g g
    features, norms, masks = [], [], []
    resized: dict[tuple[int, int], torch.Tensor] = {}
    for x in maps:
        size = tuple(x.shape[-2:])
        if size not in resized:
            resized[size] = resize_masks(support_masks, size)
        f = x.reshape(b, k, x.shape[1], -1)
        features.append(f)
        norms.append(pixel_norms(f))
        masks.append(resized[size])
    clip = support.clip.reshape(b, k, *support.clip.shape[1:])
    return PreparedSupport(features=features, norms=norms, masks=masks, clip_tokens=clip)


def prior_loss(support_priors: torch.Tensor, support_masks: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits between support priors (B, K, g, g) (already sigmoid outputs, as in the
    released code) upsampled bilinear to the mask size and the masks (B, K, H, W); mean over
    pixels, averaged over shots."""
    up = F.interpolate(support_priors, support_masks.shape[-2:], mode="bilinear", align_corners=False)
    return F.binary_cross_entropy_with_logits(up, support_masks.float())
