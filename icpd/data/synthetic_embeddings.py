"""Class embeddings for a synthetic data set: seeded random unit vectors, *not* text embeddings.

``icpd train`` and ``icpd cache-support`` need a ``(15, D)`` class-embedding file whose ``D`` is the
preset's CLIP embedding dim. Real ones come from ``icpd embed-text`` (CLIP text tower + weights);
a synthetic data set has no text and the tiny preset no text tower weights, so
``icpd data synth`` writes these instead. They carry the data set's class names (so
``--class-name ship`` works) and say what they are in their metadata (``model``: "synthetic ...").
Rows are L2-normalised, like the authors' iSAID file. Same ``(layout, preset, seed)``, same vectors.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import torch

from icpd.config import get_preset
from icpd.data.dlrsd5i import CLASS_NAMES as DLRSD_NAMES
from icpd.data.isaid5i import CLASS_NAMES as ISAID_NAMES

SYNTHETIC_MODEL = "synthetic: seeded random unit vectors, not text embeddings"


def embeddings_path(root: str | Path, preset: str) -> Path:
    """Where :func:`write_synthetic_embeddings` puts a preset's file: ``ROOT/class_embeddings_<preset>.safetensors``."""
    return Path(root) / f"class_embeddings_{preset}.safetensors"


def synthetic_embeddings(layout: str, preset: str, seed: int = 0) -> tuple[np.ndarray, tuple[str, ...]]:
    """``(15, D)`` float32 unit rows for the preset's ``embed_dim`` and the layout's class names.

    The generator is keyed by ``(seed, D)`` and a stable hash of the layout, so two layouts (or two
    presets of different D) never share vectors by accident.
    """
    names = ISAID_NAMES if layout == "isaid5i" else DLRSD_NAMES if layout == "dlrsd5i" else None
    if names is None:
        raise ValueError(f"layout must be 'isaid5i' or 'dlrsd5i', got {layout!r}")
    p = get_preset(preset)
    rng = np.random.default_rng([seed, p.embed_dim, zlib.crc32(layout.encode())])
    emb = rng.standard_normal((p.num_classes, p.embed_dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb, tuple(names[: p.num_classes])


def write_synthetic_embeddings(root: str | Path, layout: str, preset: str = "tiny", seed: int = 0) -> Path:
    """Write the synthetic class embeddings of a data set under ``root`` (atomically).

    Returns:
        the file written (:func:`embeddings_path`), readable by
        :func:`icpd.model.text.load_class_embeddings` with ``preset``.
    """
    from icpd.model.text import ClassEmbeddings, save_class_embeddings

    emb, names = synthetic_embeddings(layout, preset, seed)
    path = embeddings_path(root, get_preset(preset).name)
    return save_class_embeddings(
        path, ClassEmbeddings(torch.from_numpy(emb), names, normalized=True, model=SYNTHETIC_MODEL),
        prompt=f"none ({layout}, seed {seed})",
    )
