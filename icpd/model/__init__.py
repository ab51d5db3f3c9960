"""ICPD-Net in PyTorch: the network, its parts, checkpoints and class-text embeddings.

    from icpd.model import load_checkpoint
    model = load_checkpoint("best.safetensors")          # or the authors' .pt
    feats = model.encode(images)                          # Features: 13 ResNet maps + CLIP tokens

Public API: :class:`ICPDNet`, :class:`Features`, :func:`load_checkpoint`, :func:`save_checkpoint`,
:func:`build_model`, :func:`seeded_model`, :class:`CheckpointError`, :class:`ClassEmbeddings`,
:func:`load_class_embeddings`. The rank-prior op is :mod:`icpd.model.rank_prior`.
"""

from icpd.model.checkpoint import CheckpointError, build_model, load_checkpoint, save_checkpoint, seeded_model
from icpd.model.icpd_net import Features, ICPDNet
from icpd.model.text import ClassEmbeddings, load_class_embeddings

__all__ = [
    "CheckpointError",
    "ClassEmbeddings",
    "Features",
    "ICPDNet",
    "build_model",
    "load_checkpoint",
    "load_class_embeddings",
    "save_checkpoint",
    "seeded_model",
]
