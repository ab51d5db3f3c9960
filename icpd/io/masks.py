"""Reading binary support masks: (H, W) uint8 in {0, 1}, refused with the values found otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from icpd.io.raster import ImageError, Raster, decode, describe_array


def _format_values(values: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(str(int(v)) for v in values[:limit])
    more = f", ... ({len(values)} distinct)" if len(values) > limit else ""
    return "{" + shown + more + "}"


def read_mask(path: str | os.PathLike[str], like: Raster | None = None) -> np.ndarray:
    """Read a binary mask as (H, W) uint8 in {0, 1}.

    Accepted: single-channel, or RGB/RGBA whose colour channels are equal (alpha ignored), of
    any integer type, holding only 0/1 or only 0/255 (an all-0 mask is empty, all-255 or
    all-1 is full). Anything else is refused with the values found.

    Args:
        path: the mask file (PNG recommended: JPEG compression changes mask values).
        like: the image the mask belongs to; its height and width must match.

    Raises:
        ImageError: missing/corrupt file, non-binary values, differing channels, float
            dtype, or a size that differs from ``like``.
    """
    path = Path(path)
    arr, _, _ = decode(path, "mask")
    if arr.ndim == 3:
        if arr.shape[2] == 4 and path.suffix.lower() == ".png":
            arr = arr[:, :, :3]  # RGBA PNG: the alpha is not part of the mask
        if arr.shape[2] != 1 and not (arr == arr[:, :, :1]).all():
            raise ImageError(
                f"mask {path}: {describe_array(arr)} with channels that differ, so it is not a binary "
                "mask. Save a single-channel (grayscale) PNG with 0 = background, 255 (or 1) = object."
            )
        arr = arr[:, :, 0]
    if not np.issubdtype(arr.dtype, np.integer):
        raise ImageError(
            f"mask {path}: {describe_array(arr)}; masks must be integer 0/1 or 0/255. "
            "Threshold it and save as a uint8 PNG, e.g. ((prob > 0.5) * 255).astype('uint8')."
        )
    if arr.dtype in (np.uint8, np.uint16):
        values = np.flatnonzero(np.bincount(arr.ravel()))  # exact and O(N), unlike np.unique's sort
    else:
        values = np.unique(arr)
    found = set(values.tolist())
    if found <= {0, 1}:
        mask = arr.astype(np.uint8)
    elif found <= {0, 255}:
        mask = (arr == 255).astype(np.uint8)
    else:
        is_jpeg = path.suffix.lower() in (".jpg", ".jpeg")
        jpeg = " JPEG compression alters mask values: save masks as PNG." if is_jpeg else ""
        raise ImageError(
            f"mask {path}: values {_format_values(values)} are not binary; expected only 0/1 or "
            "only 0/255. If this is a class-index map, save the class you want as a binary mask, "
            f"e.g. ((labels == k) * 255).astype('uint8').{jpeg}"
        )
    if like is not None and mask.shape != like.pixels.shape[:2]:
        raise ImageError(
            f"mask {path} is {mask.shape[0]}x{mask.shape[1]} (HxW) but its image "
            f"{like.path} is {like.height}x{like.width}. Masks must match their image pixel for "
            "pixel: re-export the mask at the image's size (don't resize binary masks with interpolation)."
        )
    return np.ascontiguousarray(mask)


# --------------------------------------------------------------------------------------------
# writing


