"""ICPD-Net in PyTorch: the network, its parts, checkpoints and class-text embeddings.

    from icpd.model import load_checkpoint
    model = load_checkpoint("best.safetensors")          # or the authors' .pt
    feats = model.encode(images)                          # Features: 13 ResNet maps + CLIP tokens

Public API: :class:`ICPDNet`, :class:`Features`, :func:`load_checkpoint`, :func:`save_checkpoint`,
:func:`build_model`, :func:`seeded_model`, :class:`CheckpointError`, :class:`ClassEmbeddings`,
:func:`load_class_embeddings`. The rank-prior op is :mod:`icpd.model.rank_prior`.

The names resolve on first use: importing a submodule that needs no torch (``icpd.model.text``
reads class embeddings with numpy) must not import the network, so a runtime-only install
(no torch) can read class embeddings.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from icpd.model.checkpoint import (
        CheckpointError,
        build_model,
        load_checkpoint,
        save_checkpoint,
        seeded_model,
    )
    from icpd.model.icpd_net import Features, ICPDNet
    from icpd.model.text import ClassEmbeddings, load_class_embeddings

_WHERE = {
    "CheckpointError": "checkpoint",
    "build_model": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "seeded_model": "checkpoint",
    "Features": "icpd_net",
    "ICPDNet": "icpd_net",
    "ClassEmbeddings": "text",
    "load_class_embeddings": "text",
}

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


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f"icpd.model.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'icpd.model' has no attribute {name!r}")
