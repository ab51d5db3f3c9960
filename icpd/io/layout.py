"""What an image file holds, and the small helpers every decoder shares.

:class:`Layout` is a file's real size, band count, pixel type and band meaning, read from the file
itself, so that every message about an image states what the user's file is, not what a decoder
made of it; :class:`Decoded` is pixels plus layout, georeferencing and the notes of what was
converted. Used by :mod:`icpd.io.decoding` (PNG, JPEG, dispatch) and :mod:`icpd.io.tiff`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
TIFF_SUFFIXES: tuple[str, ...] = (".tif", ".tiff")
GEO_EXTRA_HINT = "pip install 'icpd[geo]'"
GEO_TAGS = (33550, 33922, 34264, 34735)  # ModelPixelScale, ModelTiepoint, ModelTransformation, GeoKeyDirectory
LOSSY = ("JPEG", "OJPEG", "WEBP", "JPEGXL", "JPEG2000", "LERC")  # TIFF codecs whose decoders differ: no OpenCV fallback
MINISWHITE = "min-is-white grey"  # a TIFF layout kind: 0 is white
BAND_NAMES = {1: "grey", 2: "grey+alpha", 3: "RGB", 4: "RGBA"}  # decoded band counts, in words
NO_GEO_NOTE = ("GeoTIFF georeferencing (CRS, transform) not kept: reading it needs rasterio "
               f"({GEO_EXTRA_HINT}); outputs are not georeferenced")


class ImageError(ValueError):
    """An input image or mask that icpd cannot use; the message names the file and the fix."""


@dataclass(frozen=True)
class GeoInfo:
    """Georeferencing of a raster, as plain data (no rasterio objects).

    ``transform`` is the affine ``(a, b, c, d, e, f)`` in rasterio/``affine`` order, mapping
    the top-left corner of pixel (row, col) to ``x = a*col + b*row + c``,
    ``y = d*col + e*row + f`` in CRS units. ``crs_wkt`` is the CRS as WKT, or None when the
    file has a transform but no CRS.
    """

    crs_wkt: str | None
    transform: tuple[float, float, float, float, float, float]


@dataclass(frozen=True)
class Layout:
    """What a file holds, before any conversion.

    Attributes:
        height, width: pixels, as stored (before an EXIF rotation).
        bands: band count of the file (a palette file has 1 band of indices, a CMYK JPEG 4).
        dtype: pixel type of the file's bands.
        kind: what the bands mean, in words ("grayscale+alpha", "RGBA", "palette", "CMYK"), or "".
        alpha: the last band is alpha (PNG colour types 4 and 6; not TIFF, see ``_tiff_layout``).
        decoded: band count of the decoded pixels when it differs from ``bands`` (palette
            colours looked up: 3 or 4; CMYK converted to RGB: 3), else None.
    """

    height: int
    width: int
    bands: int
    dtype: np.dtype
    kind: str = ""
    alpha: bool = False
    decoded: int | None = None

    @property
    def count(self) -> int:
        """Bands of the decoded pixels: what band numbers (``--bands``) refer to."""
        return self.bands if self.decoded is None else self.decoded

    def describe(self) -> str:
        """``"300x400 (HxW), 4 band(s), uint16"``; the kind in brackets after the band count."""
        kind = f" ({self.kind})" if self.kind else ""
        read_as = "" if self.decoded is None else f", read as {self.decoded} bands ({BAND_NAMES[self.decoded]})"
        return f"{self.height}x{self.width} (HxW), {self.bands} band(s){kind}, {np.dtype(self.dtype)}{read_as}"


@dataclass(frozen=True, eq=False)
class Decoded:
    """``pixels``: (H, W, bands) in file band order; ``reader``: "rasterio", "tifffile" or "cv2"."""

    pixels: np.ndarray
    layout: Layout
    geo: GeoInfo | None
    reader: str
    notes: tuple[str, ...] = ()


def import_rasterio(needed_for: str | None = None) -> ModuleType | None:
    """Import rasterio lazily. Returns None when missing, or raises if ``needed_for`` is set."""
    try:
        import rasterio
    except ImportError as exc:
        if needed_for is None:
            return None
        raise ImportError(
            f"{needed_for} needs rasterio, which is not installed. Install the geo extra: {GEO_EXTRA_HINT}"
        ) from exc
    return rasterio


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """OpenCV's log level at ERROR for the block (it is process-wide: restored afterwards)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


@contextlib.contextmanager
def quiet_tifffile() -> Iterator[None]:
    """tifffile's logger silenced for the block (it is process-wide: restored afterwards). It logs
    broken tags of readable files as errors: noise to a user; what it cannot read, we say."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def check_file(path: Path, what: str) -> bytes:
    """The file's bytes, or an ImageError saying why there are none."""
    if not path.exists():
        raise ImageError(f"{what} {path} does not exist. Check the path (relative to {Path.cwd()}).")
    if not path.is_file():
        raise ImageError(f"{what} {path} is not a file (a folder?). Pass an image file.")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{what} {path} could not be read: {exc.strerror}. Check its permissions.") from exc
    if not data:
        raise ImageError(f"{what} {path} is empty (0 bytes). Re-export or re-copy the file.")
    return data


def as_hwc(arr: np.ndarray) -> np.ndarray:
    return arr[:, :, None] if arr.ndim == 2 else arr


def cv2_decode(data: bytes) -> np.ndarray | None:
    """(H, W, bands) with OpenCV's BGR(A) turned to file order RGB(A), or None when it cannot decode."""
    try:
        with quiet_opencv():
            arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    if arr is None:
        return None
    arr = as_hwc(arr)
    if arr.shape[2] in (3, 4):
        arr = arr[:, :, [2, 1, 0, 3][: arr.shape[2]]]  # cv2 BGR(A) -> file order RGB(A)
    return np.ascontiguousarray(arr)


