"""Support images + masks -> a ``SupportSet``: the support-only work, done once per class.

Used by ``Predictor.encode_support`` (and through it ``icpd cache-support``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from icpd.runtime.backends.protocol import image_groups
from icpd.runtime.support_cache import SupportSet

if TYPE_CHECKING:
    from icpd.config import Preset
    from icpd.runtime.backends.protocol import RuntimeBackend


def target_embeddings(class_embeddings: Any, class_name: str, num_classes: int, embed_dim: int) -> np.ndarray:
    """(15, D) float32 class embeddings with the target class first.

    ``class_embeddings`` is an ``icpd.model.text.ClassEmbeddings`` (rows in file order: the row
    named ``class_name`` is moved first, the others keep their order; a name not in it is
    refused with the known names) or an array-like (15, D) already ordered target first.
    """
    from icpd.model.text import ClassEmbeddings

    if isinstance(class_embeddings, ClassEmbeddings):
        emb = class_embeddings.for_target(class_name).numpy()
    else:
        emb = np.asarray(class_embeddings.numpy() if hasattr(class_embeddings, "numpy") else class_embeddings)
    if emb.shape != (num_classes, embed_dim):
        raise ValueError(f"class embeddings: shape {emb.shape}; expected ({num_classes}, {embed_dim}) "
                         "(`icpd embed-text` for this model's preset)")
    return np.ascontiguousarray(emb, np.float32)


def encode_support(backend: RuntimeBackend, preset: Preset, pixels: list[np.ndarray], masks: list[np.ndarray],
                   class_name: str, class_embeddings: Any, fingerprint: str, backend_name: str = "") -> SupportSet:
    """K support images + masks -> the SupportSet of ``class_name`` for the model ``backend`` runs
    (``Predictor.encode_support`` fills in backend, preset, fingerprint and backend name).

    Args:
        pixels: K uint8 RGB images, each (H, W, 3) (sizes may differ).
        masks: K masks, each (H, W) with 1 on the class, 0 elsewhere (at least one not empty).
        class_name: the class's name (the target row when ``class_embeddings`` is a ``ClassEmbeddings``).
        class_embeddings: ``icpd.model.text.ClassEmbeddings`` (from ``load_class_embeddings``), or a
            (15, D) array with the target class first (see :func:`target_embeddings`).

    Returns:
        A SupportSet whose tensors are the matcher's support inputs: per level features (K, C, N),
        norms (K, N), soft masks (K, N); class_embeddings (15, D); raw masks (K, S, S) if the preset fuses.

    Example::

        emb = load_class_embeddings("classes.safetensors", preset=p.preset)
        ship = p.encode_support([read_image("a.png")], [read_mask("a_mask.png")], "ship", emb)
        p.add_support(ship.save("ship.support"))
    """
    import torch

    from icpd.io.labels import resize_label
    from icpd.model.icpd_net import Features, prepare_support_tensors

    p = preset
    if len(pixels) != len(masks) or not pixels:
        raise ValueError(f"support set {class_name!r}: {len(pixels)} images and {len(masks)} masks; give one mask per image")
    if all(int(np.asarray(m).sum()) == 0 for m in masks):
        raise ValueError(f"support set {class_name!r}: every mask is empty; mark the object in at least one mask")
    emb = target_embeddings(class_embeddings, class_name, p.num_classes, p.embed_dim)
    images = backend.preprocess(image_groups(list(pixels)))
    feats = [torch.from_numpy(np.ascontiguousarray(f)) for f in backend.to_host(backend.encode(images))]
    m = np.stack([resize_label(np.asarray(mk).astype(np.uint8), p.image_size) for mk in masks]).astype(np.float32)
    raw = torch.from_numpy(m)  # (K, S, S)
    prepared = prepare_support_tensors(Features.from_list(feats), raw.unsqueeze(0))
    packed = backend.signature.pack_support(prepared, torch.from_numpy(emb), raw)
    tensors = {n: np.ascontiguousarray(t.numpy()) for n, t in packed.items()}
    return SupportSet(class_name, fingerprint, len(pixels), tensors, {"backend": backend_name or backend.name})
