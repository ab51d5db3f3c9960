"""Reading support masks: (H, W) uint8 in {0, 1}, from a binary mask (:func:`read_mask`) or one
class of a class-id label map (:func:`read_class_mask`); refused with the values found otherwise.
:func:`check_mask` is the binary-mask rule itself, shared by files and in-memory arrays
(``Predictor.encode_support``), so both are refused in the same words."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from icpd.errors import ParamMessage, arg
from icpd.io.raster import ImageError, Raster, decode, describe_array


class ClassIdError(ParamMessage, ImageError):
    """A label map that lacks the ``class_id`` asked for (``--class-id`` on the command line)."""


def _format_values(values: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(str(int(v)) for v in values[:limit])
    more = f", ... ({len(values)} distinct)" if len(values) > limit else ""
    return "{" + shown + more + "}"


MASK_RULE = "0/1 or 0/255"  # the values a binary mask may hold (a file, an array: one rule)


def check_mask(arr: np.ndarray, source: str, image_size: tuple[int, int] | None = None, image_source: str = "",
               hint: str = "") -> np.ndarray:
    """The binary-mask rule, for a decoded file (:func:`read_mask`) and an in-memory array
    (``Predictor.encode_support``) alike: one rule, the same words.

    Args:
        arr: (H, W), or (H, W, C) whose channels are equal; integer (or bool) holding only 0/1
            or only 0/255 (all 0: empty, all 1 or all 255: full).
        source: what the messages call it, e.g. ``"mask a_mask.png"`` or ``"support set 'ship': mask 2 of 3"``.
        image_size: (H, W) of the image the mask belongs to; the mask must match it.
        image_source: what the messages call that image (e.g. its path).
        hint: appended to the non-binary refusal (e.g. that JPEG alters mask values).

    Returns:
        (H, W) uint8 in {0, 1}, C-contiguous.

    Raises:
        ImageError: differing channels, another shape, a float dtype, non-binary values, or a
            size other than ``image_size``; the message gives the values found and the fix.
    """
    if not isinstance(arr, np.ndarray):
        raise ImageError(f"{source}: got {type(arr).__name__}; expected a numpy array (H, W) of {MASK_RULE} "
                         "(icpd.io.read_mask reads mask files)")
    if arr.ndim == 3:
        if arr.shape[2] != 1 and not (arr == arr[:, :, :1]).all():
            raise ImageError(
                f"{source}: {describe_array(arr)} with channels that differ, so it is not a binary "
                "mask. Save a single-channel (grayscale) PNG with 0 = background, 255 (or 1) = object."
            )
        arr = arr[:, :, 0]
    if arr.ndim != 2 or 0 in arr.shape:
        raise ImageError(f"{source}: shape {arr.shape}; expected one (H, W) mask of {MASK_RULE} per image")
    if arr.dtype == np.bool_:
        arr = arr.view(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ImageError(
            f"{source}: {describe_array(arr)}; masks must be integer {MASK_RULE}. "
            "Threshold it, e.g. ((prob > 0.5) * 255).astype('uint8'), and save it as a uint8 PNG."
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
        raise ImageError(
            f"{source}: values {_format_values(values)} are not binary; expected only 0/1 or "
            "only 0/255. If this is a class-index map, save the class you want as a binary mask, "
            f"e.g. ((labels == k) * 255).astype('uint8').{hint}"
        )
    if image_size is not None and mask.shape != tuple(image_size):
        its = f"its image {image_source}" if image_source else "its image"
        raise ImageError(
            f"{source} is {mask.shape[0]}x{mask.shape[1]} (HxW) but {its} is {image_size[0]}x{image_size[1]}. "
            "Masks must match their image pixel for pixel: re-export the mask at the image's size (don't "
            "resize binary masks with interpolation)."
        )
    return np.ascontiguousarray(mask)


def read_mask(path: str | os.PathLike[str], like: Raster | None = None, data: bytes | None = None) -> np.ndarray:
    """Read a binary mask as (H, W) uint8 in {0, 1}.

    Accepted (:func:`check_mask`'s rule): single-channel, or RGB/RGBA whose colour channels are
    equal (a PNG's alpha ignored), of any integer type, holding only 0/1 or only 0/255 (an all-0
    mask is empty, all-255 or all-1 is full). Anything else is refused with the values found.

    Args:
        path: the mask file (PNG recommended: JPEG compression changes mask values).
        like: the image the mask belongs to; its height and width must match.
        data: the file's bytes, already in memory (an upload; ``path`` then only names it).

    Raises:
        ImageError: missing/corrupt file, non-binary values, differing channels, float
            dtype, or a size that differs from ``like``.
    """
    path = Path(path)
    arr, _, _ = decode(path, "mask", data)
    if arr.ndim == 3 and arr.shape[2] == 4 and path.suffix.lower() == ".png":
        arr = arr[:, :, :3]  # RGBA PNG: the alpha is not part of the mask
    is_jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    return check_mask(arr, f"mask {path}", None if like is None else like.pixels.shape[:2],
                      str(like.path) if like is not None and like.path is not None else "",
                      hint=" JPEG compression alters mask values: save masks as PNG." if is_jpeg else "")


def _palette_indices(path: Path) -> np.ndarray | None:
    """The palette indices of a palette PNG (class ids in many label maps), or None for other files.
    cv2 expands palettes to colours, so Pillow reads these when it is installed."""
    with path.open("rb") as fh:
        head = fh.read(26)
    if path.suffix.lower() != ".png" or len(head) < 26 or head[25] != 3:  # IHDR colour type 3 = palette
        return None
    try:
        from PIL import Image
    except ImportError:  # the runtime-only install: 8-bit palette PNGs (icpd infer's labels) read without it
        from icpd.io.labels import read_palette_png

        try:
            return read_palette_png(path)
        except ValueError as e:
            raise ImageError(f"label {e}, or save the label map as a single-channel PNG of class ids") from None
    with Image.open(path) as im:
        return np.asarray(im)


def read_class_mask(path: str | os.PathLike[str], class_id: int, like: Raster | None = None) -> np.ndarray:
    """Read one class of a class-id label map as a binary mask, (H, W) uint8 in {0, 1}.

    Accepted: single-channel integer files (8 or 16 bit), palette PNGs (the palette indices are the
    class ids), and RGB/RGBA files whose colour channels are equal (the value is the class id).
    Colour-coded label maps are refused.

    Args:
        path: the label file (PNG or TIFF; JPEG compression changes class ids).
        class_id: the class to take (pixels equal to it become 1).
        like: the image the label belongs to; its height and width must match.

    Raises:
        ImageError: missing/corrupt file, colour-coded or float labels, ``class_id`` absent from
            the file (the message lists the ids present), or a size that differs from ``like``.
    """
    path = Path(path)
    arr, _, _ = decode(path, "label")
    palette = _palette_indices(path)
    if palette is not None:
        arr = palette
    if arr.ndim == 3:
        if arr.shape[2] == 4 and path.suffix.lower() == ".png":
            arr = arr[:, :, :3]
        if arr.shape[2] != 1 and not (arr == arr[:, :, :1]).all():
            raise ImageError(
                f"label {path}: {describe_array(arr)} with channels that differ: a colour-coded label map? "
                "Save a single-channel PNG whose pixel values are the class ids, or pass a binary --mask instead."
            )
        arr = arr[:, :, 0]
    if not np.issubdtype(arr.dtype, np.integer):
        raise ImageError(f"label {path}: {describe_array(arr)}; label maps hold integer class ids. "
                         "Save it as an 8- or 16-bit single-channel PNG.")
    mask = (arr == class_id).astype(np.uint8)
    if not mask.any():
        is_jpeg = (" JPEG compression alters class ids: save label maps as PNG."
                   if path.suffix.lower() in (".jpg", ".jpeg") else "")
        raise ClassIdError(
            f"label {path}: class id {class_id} does not occur; the ids present are "
            f"{_format_values(np.unique(arr))}. Check {arg('class_id')} (the pixel value of the class in "
            f"this file).{is_jpeg}"
        )
    if like is not None and mask.shape != like.pixels.shape[:2]:
        raise ImageError(
            f"label {path} is {mask.shape[0]}x{mask.shape[1]} (HxW) but its image {like.path} is "
            f"{like.height}x{like.width}. Labels must match their image pixel for pixel."
        )
    return np.ascontiguousarray(mask)


