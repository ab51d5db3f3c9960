"""Pictures of predictions: colour label maps, overlays on the scene, probability heatmaps.

All inputs and outputs are RGB (never OpenCV's BGR); images are (H, W, 3) uint8. Pictures keep
the scene's size (pixel for pixel over the scene): the legend and the colour bar are drawn inside.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["LEGEND_MAX_FRACTION", "OVERLAY_PALETTE", "PALETTE", "colorize_labels", "colour_hex", "heatmap", "overlay",
           "overlay_palette", "voc_palette"]


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


# Class colours of overlays: saturated hues that aerial scenes lack (their fields, forests, soil,
# roads, roofs and water are greens, browns, greys and dark blues), so a tint stays visible on any of
# them. Class 1 is magenta, not VOC's dark red / dark green, which vanish on fields and soil.
_VIVID = np.array([
    (255, 0, 255), (255, 230, 0), (0, 235, 255), (255, 40, 40), (255, 140, 0), (60, 110, 255),
    (255, 130, 200), (160, 70, 255), (255, 255, 255), (190, 255, 40), (200, 0, 100), (255, 200, 140),
    (120, 200, 255), (230, 170, 255), (0, 160, 150),
], dtype=np.uint8)


def overlay_palette(n: int = 256) -> np.ndarray:
    """(n, 3) uint8 RGB overlay colours: 0 black (background, never drawn), 1..15 the vivid colours
    above (pairwise distinct), further classes the VOC colours."""
    palette = voc_palette(n).copy()
    k = min(n - 1, len(_VIVID))
    palette[1:k + 1] = _VIVID[:k]
    return palette


OVERLAY_PALETTE: np.ndarray = overlay_palette()
OVERLAY_PALETTE.flags.writeable = False


def colour_hex(label: int, palette: np.ndarray | None = None) -> str:
    """``"#rrggbb"`` of ``label`` in :func:`overlay`'s colours (``palette[label % len(palette)]``)."""
    palette = OVERLAY_PALETTE if palette is None else np.asarray(palette)
    r, g, b = (int(c) for c in palette[label % len(palette)])
    return f"#{r:02x}{g:02x}{b:02x}"


def overlay(
    image: np.ndarray,
    label_map: np.ndarray,
    alpha: float = 0.5,
    palette: np.ndarray | None = None,
    *,
    outline: bool = True,
    class_names: list[str] | tuple[str, ...] | None = None,
) -> np.ndarray:
    """Tint the labelled pixels of ``image`` with their class colour, outline each class's regions,
    and (with ``class_names``) draw a legend.

    ``out = round((1 - alpha) * image + alpha * colour)`` where ``label_map > 0``; background pixels
    are unchanged except under an outline or the legend. Outlines (full colour, on the labelled
    side of each region's border, ``max(1, min(H, W) // 256)`` px) keep small objects visible where
    a tint alone is lost. The legend (a dark box with a swatch and name per class) goes in the
    corner that covers the fewest labelled pixels, unless it would cover more than
    :data:`LEGEND_MAX_FRACTION` of the picture (a 128 px tile with two names: 23 % of it): then
    none is drawn, and the names and colours are in ``summary.json`` (``"labels"``, ``"colours"``).

    Args:
        image: (H, W, 3) uint8 RGB.
        label_map: (H, W) integer class indices, same H, W; 0 = background.
        alpha: opacity of the colour in [0, 1] (0: no tint; outlines and legend still drawn).
        palette: as in :func:`colorize_labels`; default :data:`OVERLAY_PALETTE`.
        outline: draw region outlines.
        class_names: names of labels 1..N (``class_names[i]`` is label ``i + 1``); None: no legend.

    Returns:
        (H, W, 3) uint8 RGB, the size of ``image``.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"overlay: image must be (H, W, 3) uint8, got {image.shape} {image.dtype}.")
    if np.shape(label_map) != image.shape[:2]:
        raise ValueError(f"overlay: label_map shape {np.shape(label_map)} != image size {image.shape[:2]}.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay: alpha must be in [0, 1], got {alpha}.")
    palette = OVERLAY_PALETTE if palette is None else palette
    labels = np.asarray(label_map)
    colours = colorize_labels(labels, palette)
    blended = np.round((1.0 - alpha) * image.astype(np.float32) + alpha * colours.astype(np.float32))
    out = image.copy()
    fg = labels > 0
    out[fg] = blended[fg].astype(np.uint8)
    if outline and fg.any():
        edge = _inner_edges(labels, max(1, min(labels.shape) // 256))
        out[edge] = colours[edge]
    if class_names:
        _draw_legend(out, fg, [str(n) for n in class_names], np.asarray(palette))
    return out


def _inner_edges(labels: np.ndarray, width: int) -> np.ndarray:
    """(H, W) bool: labelled pixels within ``width`` px of a pixel of another label (or background)."""
    lab = labels.astype(np.int32)
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    hi = cv2.dilate(lab.astype(np.float32), kernel)  # a different neighbour shows in the max or the min
    lo = cv2.erode(lab.astype(np.float32), kernel, borderType=cv2.BORDER_REPLICATE)
    return (lab > 0) & ((hi != lab) | (lo != lab))


_FONT = cv2.FONT_HERSHEY_SIMPLEX
LEGEND_MAX_FRACTION = 0.2  # a legend that would hide more of the scene than this is left out


def _text_scale(h: int, w: int) -> tuple[float, int]:
    """Font scale and stroke for a picture of h x w: readable at 128 px, not huge at 4000 px."""
    scale = float(np.clip(min(h, w) / 600.0, 0.32, 1.0))
    return scale, 1 if scale < 0.7 else 2


def _draw_legend(out: np.ndarray, fg: np.ndarray, names: list[str], palette: np.ndarray) -> None:
    """Draw the legend box in place, in the corner whose box area holds the fewest labelled pixels."""
    h, w = out.shape[:2]
    scale, thick = _text_scale(h, w)
    (_, th), base = cv2.getTextSize("Ag", _FONT, scale, thick)
    row, pad = th + base + 4, 4
    sw = th + base  # swatch side
    text_w = max(cv2.getTextSize(n, _FONT, scale, thick)[0][0] for n in names)
    box_w, box_h = min(w, pad * 3 + sw + text_w), min(h, pad * 2 + row * len(names))
    if box_w * box_h > LEGEND_MAX_FRACTION * h * w:
        return  # the scene matters more; summary.json names the colours
    corners = [(0, 0), (w - box_w, 0), (0, h - box_h), (w - box_w, h - box_h)]
    x0, y0 = min(corners, key=lambda c: int(fg[c[1]:c[1] + box_h, c[0]:c[0] + box_w].sum()))
    region = out[y0:y0 + box_h, x0:x0 + box_w]
    region[:] = (0.3 * region.astype(np.float32) + 0.7 * 20).astype(np.uint8)  # darkened, scene still faint
    for i, name in enumerate(names):
        y = y0 + pad + i * row
        colour = tuple(int(c) for c in palette[(i + 1) % len(palette)])
        cv2.rectangle(out, (x0 + pad, y + 2), (x0 + pad + sw, y + 2 + sw - 1), colour, -1)
        cv2.rectangle(out, (x0 + pad, y + 2), (x0 + pad + sw, y + 2 + sw - 1), (255, 255, 255), 1)
        cv2.putText(out, name, (x0 + 2 * pad + sw, y + 2 + th), _FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)


def heatmap(prob: np.ndarray, colormap: int = cv2.COLORMAP_TURBO, *, colorbar: bool = False) -> np.ndarray:
    """Render a probability map with an OpenCV colour map (TURBO by default: 0 dark blue, 1 dark red).

    Args:
        prob: (H, W) float in [0, 1]; quantised to 256 levels (``round(prob * 255)``).
        colormap: an OpenCV ``cv2.COLORMAP_*`` constant.
        colorbar: draw a colour bar (0 at the bottom, 1 at the top, ticks 0 / 0.5 / 1) inside the
            right edge, on a dark strip (``max(28, W // 12)`` px wide plus its labels).

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
    rgb = np.ascontiguousarray(cv2.applyColorMap(levels, colormap)[:, :, ::-1])  # BGR -> RGB
    if colorbar and min(prob.shape) >= 32:  # smaller pictures have no room for a readable bar
        _draw_colorbar(rgb, colormap)
    return rgb


def _draw_colorbar(rgb: np.ndarray, colormap: int) -> None:
    h, w = rgb.shape[:2]
    scale, thick = _text_scale(h, w)
    (tw, th), base = cv2.getTextSize("0.5", _FONT, scale, thick)
    bar_w, pad = max(6, w // 40), 4
    strip_w = min(w, bar_w + tw + 3 * pad)
    top, bottom = pad + th // 2, h - pad - th // 2 - base
    x0 = w - strip_w
    rgb[:, x0:] = (0.25 * rgb[:, x0:].astype(np.float32) + 0.75 * 20).astype(np.uint8)
    ramp = np.linspace(255, 0, max(bottom - top, 1)).round().astype(np.uint8)[:, None]  # top = 1
    bar = cv2.applyColorMap(np.repeat(ramp, bar_w, 1), colormap)[:, :, ::-1]
    rgb[top:top + bar.shape[0], x0 + pad:x0 + pad + bar_w] = bar
    for value in (1.0, 0.5, 0.0):
        y = round(bottom - value * (bottom - top))
        cv2.line(rgb, (x0 + pad + bar_w, y), (x0 + pad + bar_w + 2, y), (255, 255, 255), 1)
        cv2.putText(rgb, f"{value:g}", (x0 + 2 * pad + bar_w, y + th // 2), _FONT, scale, (255, 255, 255), thick,
                    cv2.LINE_AA)
