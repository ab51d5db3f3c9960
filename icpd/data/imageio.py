"""Reading image and label files, with checks that fail in words a person can act on.

Images (``read_image``) are decoded with OpenCV and returned as ``(H, W, 3)`` uint8 RGB:

- 8-bit RGB / BGR files: channel order fixed to RGB.
- Grayscale (one band): the band is copied into R, G and B (no colour is invented).
- 16-bit (uint16) files: divided by 257 and rounded, which maps 0..65535 onto 0..255 exactly.
  A uint16 file whose values all lie in 0..255 is refused: it may be 8-bit data stored in a
  16-bit container (dividing would turn it black) or a very dark 16-bit image; we cannot tell.
- Any other sample type (float, int32, ...) is refused.
- Four bands: accepted only when the 4th band is an alpha channel that is fully opaque
  (all 255, or all 65535 for 16-bit); it is dropped. Otherwise the 4th band may be near-infrared
  and the file is refused. Two or more than four bands are refused.

Labels (``read_label``) are decoded with Pillow and returned as ``(H, W)`` uint8 class ids:

- single-channel 8-bit (``L``), palette (``P``: the palette *indices* are the class ids),
  1-bit, or 16/32-bit integer single-channel files whose values fit the class range;
- RGB files whose three channels are equal everywhere (the value is the class id), and RGBA /
  LA files of the same kind with a fully opaque alpha. A colour-coded RGB label (different
  channels) is refused: convert it to class ids first.
- Values above ``max_label`` are refused, naming the values found.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError


class DatasetError(ValueError):
    """A data set on disk is missing, malformed or holds values this toolkit cannot use."""


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB.

    Returns:
        ``(H, W, 3)`` uint8 array, RGB order. See the module docstring for accepted formats.

    Raises:
        DatasetError: the file is missing, cannot be decoded, or its bands/bit depth are ambiguous.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"image file {path} does not exist; check the data set root and the list files")
    # np.fromfile + imdecode also handles non-ASCII paths, which cv2.imread does not on Windows.
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise DatasetError(f"image file {path} could not be decoded; is it a valid PNG/TIFF/JPEG? Re-export it")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.shape[2] == 4:
        alpha = img[:, :, 3]
        opaque = np.iinfo(img.dtype).max if img.dtype.kind in "ui" else 1.0
        if not np.all(alpha == opaque):
            raise DatasetError(
                f"image file {path} has 4 bands and the 4th is not a fully opaque alpha channel "
                f"(values {int(alpha.min())}..{int(alpha.max())}); it may be near-infrared. "
                "Save an RGB (3-band) image instead"
            )
        img = cv2.cvtColor(np.ascontiguousarray(img[:, :, :3]), cv2.COLOR_BGR2RGB)
    elif img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    else:
        raise DatasetError(
            f"image file {path} has {img.shape[2]} bands; expected 1 (grayscale), 3 (RGB) or 4 (RGB + opaque alpha)"
        )
    return _to_uint8(img, path)


def _to_uint8(img: np.ndarray, path: Path) -> np.ndarray:
    if img.dtype == np.uint8:
        return np.ascontiguousarray(img)
    if img.dtype == np.uint16:
        if int(img.max()) <= 255:
            raise DatasetError(
                f"image file {path} is 16-bit but all its values lie in 0..255: it may be 8-bit data in a "
                "16-bit file or a very dark 16-bit image, and the two need different scaling. "
                "Convert it to 8-bit yourself"
            )
        # 65535 / 257 == 255 exactly: the full 16-bit range maps onto the full 8-bit range.
        return ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
    raise DatasetError(
        f"image file {path} has sample type {img.dtype}; only 8-bit and 16-bit unsigned images are accepted. "
        "Convert it to 8-bit RGB"
    )


def read_label(path: str | Path, max_label: int = 15) -> np.ndarray:
    """Read a label file of class ids.

    Args:
        path: the label file.
        max_label: largest class id allowed; 0 is background.

    Returns:
        ``(H, W)`` uint8 array of class ids in ``0..max_label``.

    Raises:
        DatasetError: the file is missing, cannot be decoded, is colour-coded, or holds ids above
            ``max_label``.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"label file {path} does not exist; check the data set root and the list files")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError) as err:
        raise DatasetError(f"label file {path} could not be decoded ({err}); re-export it as a PNG") from None
    if mode in ("RGB", "RGBA", "LA"):
        bands = 1 if mode == "LA" else 3
        if mode in ("RGBA", "LA") and not np.all(arr[:, :, -1] == 255):
            raise DatasetError(
                f"label file {path} has a transparent alpha channel; save labels as single-channel PNGs of class ids"
            )
        arr = arr[:, :, :bands]
        if bands == 3 and not (np.array_equal(arr[:, :, 0], arr[:, :, 1]) and np.array_equal(arr[:, :, 0], arr[:, :, 2])):
            raise DatasetError(
                f"label file {path} is an RGB image whose channels differ: it looks colour-coded (for example "
                "iSAID's original instance colours). Labels must hold class ids; convert it to a single-channel "
                "PNG whose pixel values are the class ids"
            )
        arr = arr[:, :, 0]
    elif mode not in ("L", "P", "1", "I", "I;16", "I;16B", "I;16L"):
        raise DatasetError(
            f"label file {path} has image mode {mode!r}; expected a single-channel PNG of class ids (mode L or P)"
        )
    if arr.ndim != 2:
        raise DatasetError(f"label file {path} has shape {arr.shape}; expected a single-channel (H, W) label")
    top = int(arr.max()) if arr.size else 0
    if top > max_label or (arr.dtype.kind == "i" and int(arr.min()) < 0):
        bad = np.unique(arr[(arr > max_label) | (arr < 0)])[:10].tolist()
        raise DatasetError(
            f"label file {path} holds values {bad} outside 0..{max_label} (0 = background, 1..{max_label} = class "
            "ids). Is it the right file, or a colour/instance map? Convert it to class ids"
        )
    return arr.astype(np.uint8)
