"""Per-sample transforms for episodes: resize, flip, normalise, loss scale weights.

All functions work on numpy arrays in ``(H, W, 3)`` uint8 RGB / ``(H, W)`` layout and return
new arrays; ``to_tensor`` is the only one that produces a torch tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from icpd.io.labels import resize_label  # noqa: F401  (re-exported: the data pipeline's resize pair)

# Area normaliser of the scale weights: a 256 x 256 tile, the size the authors train at.
SCALE_WEIGHT_AREA = 65536.0


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize ``(H, W, 3)`` uint8 to ``(size, size, 3)`` with bilinear interpolation (no-op if equal)."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)


def binary_mask(label: np.ndarray, class_id: int) -> np.ndarray:
    """``(H, W)`` class ids -> ``(H, W)`` float32 mask, 1 where ``label == class_id`` else 0."""
    return (label == class_id).astype(np.float32)


def random_flip(image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Flip image ``(H, W, 3)`` and label ``(H, W)`` together: horizontally with p=0.5, then
    vertically with p=0.5 (two independent draws from ``rng``)."""
    flip_h, flip_v = rng.random(2) < 0.5
    if flip_h:
        image, label = image[:, ::-1], label[:, ::-1]
    if flip_v:
        image, label = image[::-1], label[::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(label)


def to_tensor(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(H, W, 3)`` uint8 RGB -> ``(3, H, W)`` float32, scaled to 0..1 then ``(x - mean) / std``
    per channel (mean/std on the 0..1 scale, from the preset)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)  # H W C -> C H W
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return x.sub_(m).div_(s)


def scale_weights(mask: np.ndarray, area: float = SCALE_WEIGHT_AREA) -> np.ndarray:
    """Per-pixel loss weights that favour small objects.

    Each 8-connected foreground component of ``A`` pixels gets weight ``1 - ln(A / area)``
    (``area`` = 65536 = 256 x 256, so at 256 px a full-tile object gets 1 and a 1-pixel object
    about 12.1); background pixels get 1. ``A`` is counted on the mask as given, i.e. after
    resizing to the network input.

    Args:
        mask: ``(H, W)`` binary mask (any dtype; nonzero = foreground).

    Returns:
        ``(H, W)`` float32 weights.
    """
    fg = (mask > 0).astype(np.uint8)
    n, comp = cv2.connectedComponents(fg, connectivity=8)
    if n <= 1:
        return np.ones(fg.shape, dtype=np.float32)
    areas = np.bincount(comp.ravel(), minlength=n).astype(np.float64)
    per_comp = np.ones(n, np.float64)  # component 0 is the background
    per_comp[1:] = 1.0 - np.log(areas[1:] / area)
    return per_comp[comp].astype(np.float32)
