"""Support images + masks -> a ``SupportSet``: the support-only work, done once per class.

Used by ``Predictor.encode_support`` (and through it ``icpd cache-support``) and by the episode
predictor (``icpd eval --model``). Its inputs are checked by :mod:`icpd.runtime.validation`, the
checks the CLI makes too. Everything here is numpy: a runtime-only install (no torch)
makes support caches with the ONNX Runtime backend. :func:`prepare_support_arrays` is the numpy
twin of ``icpd.model.icpd_net.prepare_support_tensors`` (tested equal).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from icpd.artifacts.support_cache import SupportSet
from icpd.runtime.validation import check_class_name, check_shots, check_supports, image_groups

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
        class_embeddings = class_embeddings.for_target(class_name)  # numpy from a file, torch if built so
    emb = _as_numpy(class_embeddings)
    if emb.shape != (num_classes, embed_dim):
        raise ValueError(f"class embeddings: shape {emb.shape}; expected ({num_classes}, {embed_dim}) "
                         "(`icpd embed-text` for this model's preset)")
    return np.ascontiguousarray(emb, np.float32)


def _as_numpy(array: Any) -> np.ndarray:
    """A numpy array, a torch tensor (on any device) or a nested list -> numpy, without importing torch."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def encode_support(backend: RuntimeBackend, preset: Preset, pixels: Sequence[Any], masks: Sequence[Any],
                   class_name: str, class_embeddings: Any, fingerprint: str, backend_name: str = "") -> SupportSet:
    """K support images + masks -> the SupportSet of ``class_name`` for the model ``backend`` runs
    (``Predictor.encode_support`` fills in backend, preset, fingerprint and backend name).

    Args:
        pixels: K uint8 RGB images, each (H, W, 3), or ``Raster``s from ``icpd.io.read_image``
            (sizes may differ; each side at least ``image_size / 4``).
        masks: K masks, each (H, W) of its image's size, integer or bool, only 0/1 or only 0/255
            (the rule ``icpd.io.read_mask`` applies to files); at least one not empty.
        class_name: the class's name (the target row when ``class_embeddings`` is a ``ClassEmbeddings``).
        class_embeddings: ``icpd.model.text.ClassEmbeddings`` (from ``load_class_embeddings``), or a
            (15, D) array with the target class first (see :func:`target_embeddings`).

    Returns:
        A SupportSet whose tensors are the matcher's support inputs: per level features (K, C, N),
        norms (K, N), soft masks (K, N); class_embeddings (15, D); raw masks (K, S, S) if the preset fuses.
        ``notes``: what was done to the supports (one line per support upscaled to the model input).

    Raises:
        ValueError: any input :func:`icpd.runtime.validation.check_supports` refuses, a class name
            :func:`~icpd.runtime.validation.check_class_name` refuses, or a number of shots
            outside the model's range (:func:`~icpd.runtime.validation.check_shots`).

    Example::

        emb = load_class_embeddings("classes.safetensors", preset=p.preset)
        ship = p.encode_support([read_image("a.png")], [read_mask("a_mask.png")], "ship", emb)
        p.add_support(ship.save("ship.support"))
    """
    from icpd.io.labels import resize_label

    p = preset
    class_name = check_class_name(class_name)
    images, binary, notes = check_supports(pixels, masks, class_name, p.image_size)
    check_shots(len(images), backend, f"support set {class_name!r}")
    emb = target_embeddings(class_embeddings, class_name, p.num_classes, p.embed_dim)
    feats = backend.to_host(backend.encode(backend.preprocess(image_groups(images))))
    raw = np.stack([resize_label(mk, p.image_size) for mk in binary]).astype(np.float32)
    prepared = prepare_support_arrays(feats, raw[None])  # (K, S, S) -> one support set (1, K, S, S)
    packed = backend.signature.pack_support(prepared, emb, raw)
    tensors = {n: np.ascontiguousarray(t, dtype=np.float32) for n, t in packed.items()}
    meta: dict[str, Any] = {"backend": backend_name or backend.name}
    if notes:
        meta["notes"] = notes
    return SupportSet(class_name, fingerprint, len(images), tensors, meta)


@dataclass(frozen=True)
class PreparedSupportArrays:
    """numpy form of ``icpd.model.icpd_net.PreparedSupport`` (what ``MatcherSignature.pack_support``
    reads): per level l, features[l] (B, K, C_l, N_l), norms[l] (B, K, N_l), masks[l] (B, K, N_l)."""

    features: list[np.ndarray]
    norms: list[np.ndarray]
    masks: list[np.ndarray]


def prepare_support_arrays(features: Sequence[np.ndarray], masks: np.ndarray) -> PreparedSupportArrays:
    """The matcher's support-only work in numpy: encoder outputs of B*K support images + masks.

    features: per level, backbone maps (B*K, C_l, h_l, w_l), then the CLIP tokens (B*K, g, g, D);
    masks: (B, K, S, S) float {0, 1}. Per level: features (B, K, C, h*w), pixel norms
    sqrt(sum of squares) over C (``pixel_norms``), masks resized bilinear with align_corners.
    Equal to the torch version within 1e-6 relative (rounding only; tested).
    """
    b, k = masks.shape[:2]
    maps = [*features[:-1], np.moveaxis(features[-1], 3, 1)]  # N g g D -> N D g g
    feats, norms, resized = [], [], []
    cache: dict[tuple[int, int], np.ndarray] = {}
    for x in maps:
        size = (int(x.shape[-2]), int(x.shape[-1]))
        if size not in cache:
            cache[size] = resize_masks_bilinear(masks, size).reshape(b, k, -1)
        f = np.ascontiguousarray(x, dtype=np.float32).reshape(b, k, x.shape[1], -1)
        feats.append(f)
        # float64 sums: the nearest float32 to the true norm (PyTorch's float32 cascade sum is within
        # an ulp or two of it; its summation order depends on the tensor's width and the CPU)
        norms.append(np.sqrt(np.einsum("bkcn,bkcn->bkn", f, f, dtype=np.float64)).astype(np.float32))
        resized.append(cache[size])
    return PreparedSupportArrays(feats, norms, resized)


def _linear_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices i0, i1 and float32 weights w0, w1 of align_corners=True linear resizing,
    computed as PyTorch's CPU kernel does (scale (in-1)/(out-1) and source positions in float32)."""
    scale = np.float32((n_in - 1) / (n_out - 1)) if n_out > 1 else np.float32(0)
    src = scale * np.arange(n_out, dtype=np.float32)
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    w1 = (src - i0.astype(np.float32)).astype(np.float32)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, np.float32(1) - w1, w1


def resize_masks_bilinear(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(..., H, W) float masks -> (..., h, w) float32, bilinear with align_corners=True, as
    ``F.interpolate(..., mode="bilinear", align_corners=True)``: within 1 ulp, and bit-equal for
    the downsampling a support cache does (S -> each level) with PyTorch 2.x on x86 CPUs, whose
    kernel sums the four corner terms in this order."""
    m = np.asarray(masks, dtype=np.float32)
    y0, y1, wy0, wy1 = _linear_weights(m.shape[-2], size[0])
    x0, x1, wx0, wx1 = _linear_weights(m.shape[-1], size[1])
    wy0, wy1 = wy0[:, None], wy1[:, None]
    top, bottom = m[..., y0, :], m[..., y1, :]
    out = top[..., x0] * (wy0 * wx0)
    out += top[..., x1] * (wy0 * wx1)
    out += bottom[..., x0] * (wy1 * wx0)
    out += bottom[..., x1] * (wy1 * wx1)
    return out
