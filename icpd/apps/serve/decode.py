"""Request bytes -> a scene: the pixels, notes and georeferencing ``icpd infer`` would get from the same
file, decoded in memory (no request body or name ever touches the file system).

The same readers as ``icpd infer``'s (its scene opener): a TIFF through
:class:`~icpd.io.windows.WindowReader` when rasterio is installed (georeferencing, nodata), everything
else through :func:`~icpd.io.read_image`; both with the bytes given instead of a path, so the decoding
rules, refusals and ``notes`` are the ones documented in :mod:`icpd.io.raster`.

Before decoding: the format is sniffed from the first bytes (PNG, JPEG, TIFF; 415 otherwise) and the
pixel count read from the header (PNG IHDR, JPEG SOF, TIFF first IFD) is held against the limit
(413), so a small file declaring a huge image (a decompression bomb) is never decoded.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from icpd.apps.serve.errors import ServeError
from icpd.io import GeoInfo, ImageError, read_image
from icpd.io.raster import import_rasterio

__all__ = ["ACCEPTED_TYPES", "Scene", "check_pixels", "decode_scene", "sniff"]

ACCEPTED_TYPES = ("image/png", "image/jpeg", "image/jpg", "image/tiff", "image/geotiff",
                  "image/tiff; application=geotiff")
_MAGIC = ((b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"II*\x00", ".tif"), (b"MM\x00*", ".tif"),
          (b"II+\x00", ".tif"), (b"MM\x00+", ".tif"))
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # JPEG frame headers


@dataclass
class Scene:
    """A decoded request image. pixels (H, W, 3) uint8 RGB; nodata (H, W) bool where all used bands
    hold the file's nodata value (None: none declared); geo, notes: as ``icpd infer`` records them."""

    pixels: np.ndarray
    geo: GeoInfo | None
    notes: tuple[str, ...]
    nodata: np.ndarray | None = None


def sniff(data: bytes, content_type: str | None) -> str:
    """The file suffix (.png, .jpg, .tif) of a body, from its first bytes; ServeError 415 for an image type
    other than PNG, JPEG or TIFF, or bytes of none of them. A non-image Content-Type is not held against
    the bytes (curl's ``--data-binary`` sends ``application/x-www-form-urlencoded``)."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind.startswith("image/") and kind not in ACCEPTED_TYPES:
        raise ServeError(415, f"Content-Type {kind!r}: this server reads PNG, JPEG and TIFF (GeoTIFF) images; "
                              "convert the image, e.g. to PNG")
    for magic, suffix in _MAGIC:
        if data.startswith(magic):
            return suffix
    raise ServeError(415, f"the body (starting {data[:8]!r}, {len(data)} bytes) is not a PNG, JPEG or TIFF image; "
                          "send the image file's bytes as they are (curl --data-binary @scene.png)")


def header_size(data: bytes, suffix: str) -> tuple[int, int] | None:
    """(height, width) declared by the file's header, without decoding pixels; None if not found."""
    if suffix == ".png" and len(data) >= 24 and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return h, w
    if suffix == ".jpg":
        pos = 2
        while pos + 9 <= len(data) and data[pos] == 0xFF:
            marker, length = data[pos + 1], struct.unpack(">H", data[pos + 2 : pos + 4])[0]
            if marker in _SOF:
                h, w = struct.unpack(">HH", data[pos + 5 : pos + 9])
                return h, w
            if marker in (0xD9, 0xDA):
                return None
            pos += 2 + length
        return None
    try:
        import tifffile

        with tifffile.TiffFile(io.BytesIO(data)) as tif:  # parses the IFDs only
            page = tif.pages[0]
            return int(page.imagelength), int(page.imagewidth)
    except Exception:  # noqa: BLE001 - not parseable here: the decoder will say what is wrong
        return None


def check_pixels(data: bytes, suffix: str, max_pixels: int) -> None:
    """ServeError 413 when the header declares more than ``max_pixels`` pixels."""
    size = header_size(data, suffix)
    if size is not None and size[0] * size[1] > max_pixels:
        h, w = size
        raise ServeError(413, f"the image declares {w}x{h} (WxH) = {h * w:,} pixels, more than this server's limit "
                              f"of {max_pixels:,} (--max-pixels); send it in tiles, or raise the limit")


def decode_scene(data: bytes, suffix: str, bands: tuple[int, int, int] | None) -> Scene:
    """Decode a body as ``icpd infer`` reads the same file; ServeError 422 with the reader's message."""
    name = Path(f"request-body{suffix}")  # names the body in the readers' messages; never opened
    try:
        if suffix == ".tif" and import_rasterio() is not None:
            from icpd.io.windows import WindowReader

            with WindowReader(name, bands, data=data) as src:
                pixels = src.read(0, 0, src.height, src.width)
                return Scene(pixels, src.geo, tuple(src.notes), src.nodata_mask(0, src.height))
        raster = read_image(name, bands, data=data)
    except ImageError as e:
        raise ServeError(422, str(e)) from None
    return Scene(raster.pixels, raster.geo, raster.notes)
