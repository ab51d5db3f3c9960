"""Decoding image files to their bands in file order, with a description of what the file holds.

:func:`decode_file` returns the pixels as (H, W, bands) in **file band order** and a
:class:`Layout`: the file's real size, band count, pixel type and band meaning (palette,
grayscale+alpha, RGBA, CMYK), read from the file itself, so that every message about an image
states what the user's file is, not what a decoder made of it.

* **PNG, JPEG**: ``cv2.imdecode(..., IMREAD_UNCHANGED)`` on the file's bytes (works with
  non-ASCII paths, and tells "can't read the file" from "not an image"); the PNG header (IHDR)
  and the JPEG frame header (SOF) give the layout. OpenCV expands palettes to RGB(A), turns
  grayscale+alpha into BGRA (undone here: the file has 2 bands) and CMYK JPEGs into RGB (Adobe
  inverted CMYK, as Photoshop writes it); each expansion is noted.
* **TIFF**: the same pixels with or without the geo extra. With rasterio (``pip install
  'icpd[geo]'``): pixels plus georeferencing. Without it: tifffile (a runtime dependency: pure
  Python, every band count, pixel type, tiled or striped, planar or interleaved, uncompressed,
  DEFLATE or PackBits); compressions tifffile cannot decode on its own (LZW, JPEG, ZSTD, ...)
  fall back to OpenCV only where OpenCV is exact (1 band, or 3 interleaved RGB bands, lossless
  compression) and are refused otherwise with the extra to install. OpenCV is not used for other
  TIFFs because it silently keeps one band of a 4-band uint16 file, or premultiplies a 4th band.
  A GeoTIFF read without rasterio says in a note that its georeferencing was not kept.

OpenCV's log level is at ERROR while it decodes (its libtiff warnings, e.g. "Unknown field with
tag 33550" for every GeoTIFF key, are noise to a user). rasterio and tifffile are imported lazily.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from icpd.io.layout import (
    GEO_EXTRA_HINT,
    IMAGE_SUFFIXES,
    NO_GEO_NOTE,
    TIFF_SUFFIXES,
    Decoded,
    GeoInfo,
    ImageError,
    Layout,
    check_file,
    cv2_decode,
    import_rasterio,
    quiet_opencv,
)
from icpd.io.tiff import apply_palette, decode_tiff, geo_of, rasterio_layout, tiff_notes

# Names the readers (icpd.io.raster, icpd.io.windows) take from here, where decoding is one concept.
__all__ = [
    "GEO_EXTRA_HINT", "IMAGE_SUFFIXES", "NO_GEO_NOTE", "TIFF_SUFFIXES", "Decoded", "GeoInfo", "ImageError", "Layout",
    "apply_palette", "decode_file", "geo_of", "import_rasterio", "quiet_opencv", "rasterio_layout", "tiff_notes",
]


# --------------------------------------------------------------------------------------------
# PNG and JPEG headers

def _png(data: bytes, arr: np.ndarray) -> tuple[np.ndarray, Layout, list[str]]:
    """OpenCV's PNG pixels back to the file's bands, with the IHDR's layout."""
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    n, notes = arr.shape[2], []
    if colour in (0, 4) and n == 4:  # OpenCV made grey+alpha into BGRA: back to the file's 2 bands
        arr, n = np.ascontiguousarray(arr[:, :, [0, 3]]), 2
    dtype = arr.dtype
    if colour == 3:
        notes.append(f"palette PNG: index colours looked up in its palette ({n} bands)")
        kind = f"palette, {depth}-bit indices" + (" with transparency" if n == 4 else "")
        return arr, Layout(height, width, 1, np.dtype(np.uint8), kind, n == 4, decoded=n), notes
    if colour in (0, 2) and n in (2, 4):  # a transparent colour key (tRNS), made into an alpha band
        return arr, Layout(height, width, n - 1, dtype, "transparent colour key (tRNS)", True, decoded=n), notes
    kind = {4: "grayscale+alpha", 6: "RGBA"}.get(colour, f"{depth}-bit grayscale" if depth < 8 else "")
    return arr, Layout(height, width, n, dtype, kind, alpha=n in (2, 4)), notes


def _jpeg_components(data: bytes) -> int:
    """Number of colour components in a JPEG's frame header (SOF); 0 when not found."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            return data[pos + 9] if pos + 9 < len(data) else 0
        if marker in (0xD9, 0xDA):
            return 0
        pos += 2 + length
    return 0


def _jpeg(data: bytes, arr: np.ndarray) -> tuple[np.ndarray, Layout, list[str]]:
    components = _jpeg_components(data)
    h, w = arr.shape[:2]
    if components == 4:  # OpenCV (libjpeg) converted CMYK/YCCK to BGR
        return arr, Layout(h, w, 4, arr.dtype, "CMYK", decoded=3), ["CMYK JPEG: converted from CMYK to RGB"]
    return arr, Layout(h, w, arr.shape[2], arr.dtype), []



def _png_too_big(data: bytes) -> str:
    """Why OpenCV refused a PNG whose header declares more pixels than it decodes ("" if it does not)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR" or len(data) < 24:
        return ""
    w, h = struct.unpack(">II", data[16:24])
    try:
        limit = int(os.environ.get("CV_IO_MAX_IMAGE_PIXELS", str(1 << 30)))  # OpenCV's own default and override
    except ValueError:
        limit = 1 << 30
    if w * h <= limit:
        return ""
    return (f"its header declares {w}x{h} (WxH) px ({w * h / 1e6:,.0f} megapixels), more than OpenCV decodes "
            f"({limit / 1e6:,.0f} Mpx, CV_IO_MAX_IMAGE_PIXELS); cut the scene into a tiled GeoTIFF (read window by "
            "window) or smaller PNGs, or re-export it if the header is wrong")


def decode_file(path: str | os.PathLike[str], what: str = "image", palette_colours: bool = True,
                data: bytes | None = None) -> Decoded:
    """Decode ``path`` to (H, W, bands) in **file band order**, with its layout and georeferencing.

    ``palette_colours=False`` keeps a palette TIFF's indices (H, W, 1) (class-id label maps); a
    palette PNG is always expanded (OpenCV cannot give its indices). ``data``: the file's bytes, already
    in memory (a request body: ``path`` then only names it in messages and gives its suffix).

    Raises:
        ImageError: missing, unreadable, empty or undecodable file (the message says what to do).
    """
    path = Path(path)
    in_memory = data is not None
    data = check_file(path, what) if data is None else data
    is_tiff = path.suffix.lower() in TIFF_SUFFIXES or data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
    decoded = decode_tiff(data, path, what, palette_colours, in_memory) if is_tiff else ""
    if isinstance(decoded, Decoded):
        return decoded
    arr = cv2_decode(data)  # not a TIFF after all (a PNG named .tif?), or one only OpenCV reads
    if arr is not None and is_tiff and arr.shape[2] != 1 and data[:4] in (b"II*\x00", b"MM\x00*"):
        arr = None  # OpenCV's multi-band TIFF pixels cannot be trusted (see _opencv_exact)
    if arr is None:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            fix = f"icpd reads {', '.join(IMAGE_SUFFIXES)} files."
        elif is_tiff and import_rasterio() is None:
            fix = (f"Not a TIFF tifffile can parse ({decoded}). If it is one, rasterio reads more TIFF variants: "
                   f"install the geo extra ({GEO_EXTRA_HINT}); else re-export it.")
        else:
            fix = "Is it truncated (an interrupted copy or download?) or not really an image? Re-export it."
        too_big = _png_too_big(data)
        if too_big:  # OpenCV refuses it unread: 'truncated?' would send the user to the wrong fix
            raise ImageError(f"{what} {path}: {too_big}")
        raise ImageError(f"{what} {path} could not be decoded as an image (starts with {data[:8]!r}). {fix}")
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        arr, layout, notes = _png(data, arr)
    elif data[:2] == b"\xff\xd8":
        arr, layout, notes = _jpeg(data, arr)
    else:  # another format OpenCV knows (BMP, WebP, ...) under an image suffix
        layout, notes = Layout(arr.shape[0], arr.shape[1], arr.shape[2], arr.dtype), []
    return Decoded(arr, layout, None, "cv2", tuple(notes))
