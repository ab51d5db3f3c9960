"""Reading image and label files, with checks that fail in words a person can act on.

Images (``read_image``) follow the inference rules of ``icpd.io.read_image`` (one set of
decoding rules everywhere) and come back as ``(H, W, 3)`` uint8 RGB.

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

import numpy as np
from PIL import Image, UnidentifiedImageError


class DatasetError(ValueError):
    """A data set on disk is missing, malformed or holds values this toolkit cannot use."""


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB, with the same decoding rules as inference.

    One set of rules for training, evaluation and inference (``icpd.io.read_image``:
    grayscale replicated, PNG alpha dropped, uint16 stretched, floats in [0, 1] scaled, ambiguous
    band layouts refused), so a model sees the same pixels from the same file everywhere.

    Returns:
        ``(H, W, 3)`` uint8 array, RGB order.

    Raises:
        DatasetError: the file is missing, cannot be decoded, or its bands/bit depth are ambiguous.
    """
    from icpd.io import ImageError
    from icpd.io import read_image as read_raster

    try:
        return read_raster(path).pixels
    except ImageError as e:
        raise DatasetError(f"{e}; check the data set root and the list files") from e  # e starts "image PATH"


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
        if bands == 3 and not (np.array_equal(arr[:, :, 0], arr[:, :, 1])
                               and np.array_equal(arr[:, :, 0], arr[:, :, 2])):
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
