"""Pictures of predictions: colour label maps, overlays on the scene, probability heatmaps.

All inputs and outputs are RGB (never OpenCV's BGR); images are (H, W, 3) uint8.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["PALETTE", "colorize_labels", "heatmap", "overlay", "voc_palette"]


def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map: (n, 3) uint8 RGB, class 0 black, every entry distinct.

    Colour ``k`` spreads the bits of ``k`` over the high bits of R, G, B (class 1 is
    (128, 0, 0), class 2 (0, 128, 0), class 3 (128, 128, 0), ...). It is fixed, needs no data
    file, and is what segmentation tools (VOC, MMSeg, Detectron2 exports) already show.
    """
    palette = np.zeros((n, 3), dtype=np.uint8)
    for k in range(n):  # 256 entries, once at import: not a pixel loop
        c, r, g, b = k, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[k] = (r, g, b)
    return palette


PALETTE: np.ndarray = voc_palette()
PALETTE.flags.writeable = False  # shared constant: callers copy before editing


def colorize_labels(label_map: np.ndarray, palette: np.ndarray | None = None) -> np.ndarray:
    """Colour a label map.

    Args:
        label_map: (H, W) integer (or bool) class indices, 0 = background.
        palette: (K, 3) uint8 RGB, one row per class; default :data:`PALETTE` (VOC, K = 256).

    Returns:
        (H, W, 3) uint8 RGB; background (0) is black with the default palette.
    """
    palette = PALETTE if palette is None else np.asarray(palette)
    if palette.ndim != 2 or palette.shape[1] != 3 or palette.dtype != np.uint8:
        raise ValueError(
            f"colorize_labels: palette must be (K, 3) uint8, got {palette.shape} {palette.dtype}."
        )
    labels = np.asarray(label_map)
    if labels.ndim != 2 or not (labels.dtype == np.bool_ or np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(
            f"colorize_labels: label_map must be (H, W) integer, got {labels.shape} {labels.dtype}."
        )
    if labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= len(palette):
            raise ValueError(
                f"colorize_labels: labels range [{lo}, {hi}] but the palette has {len(palette)} colours "
                f"(0..{len(palette) - 1}). Map ignore values (e.g. -1 or 255) to 0 first, or pass a "
                "longer palette."
            )
    return palette[labels.astype(np.intp, copy=False)]


def overlay(
    image: np.ndarray, label_map: np.ndarray, alpha: float = 0.5, palette: np.ndarray | None = None
) -> np.ndarray:
    """Tint the labelled pixels of ``image`` with their class colour.

    ``out = round((1 - alpha) * image + alpha * colour)`` where ``label_map > 0``; background
    pixels are returned unchanged.

    Args:
        image: (H, W, 3) uint8 RGB.
        label_map: (H, W) integer class indices, same H, W.
        alpha: opacity of the colour in [0, 1] (0: image unchanged, 1: pure class colour).
        palette: as in :func:`colorize_labels`.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"overlay: image must be (H, W, 3) uint8, got {image.shape} {image.dtype}.")
    if np.shape(label_map) != image.shape[:2]:
        raise ValueError(f"overlay: label_map shape {np.shape(label_map)} != image size {image.shape[:2]}.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay: alpha must be in [0, 1], got {alpha}.")
    colours = colorize_labels(label_map, palette)
    blended = np.round((1.0 - alpha) * image.astype(np.float32) + alpha * colours.astype(np.float32))
    out = image.copy()
    fg = np.asarray(label_map) > 0
    out[fg] = blended[fg].astype(np.uint8)
    return out


def heatmap(prob: np.ndarray, colormap: int = cv2.COLORMAP_TURBO) -> np.ndarray:
    """Render a probability map with an OpenCV colour map (TURBO by default: 0 dark blue, 1 dark red).

    Args:
        prob: (H, W) float in [0, 1]; quantised to 256 levels (``round(prob * 255)``).
        colormap: an OpenCV ``cv2.COLORMAP_*`` constant.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    prob = np.asarray(prob)
    if prob.ndim != 2 or not np.issubdtype(prob.dtype, np.floating):
        raise ValueError(f"heatmap: prob must be (H, W) float, got {prob.shape} {prob.dtype}.")
    finite = np.isfinite(prob)
    if prob.size and not (finite.all() and prob.min() >= 0.0 and prob.max() <= 1.0):
        values = prob[finite]
        found = f"range [{values.min():g}, {values.max():g}]" if values.size else "no finite values"
        bad = int((~finite).sum())
        raise ValueError(
            f"heatmap: prob must be finite and in [0, 1], got {found}"
            f"{f' and {bad} NaN/inf' if bad else ''}. Apply softmax/sigmoid first."
        )
    levels = np.round(prob.astype(np.float32) * 255.0).astype(np.uint8)
    bgr = cv2.applyColorMap(levels, colormap)
    return np.ascontiguousarray(bgr[:, :, ::-1])  # BGR -> RGB
