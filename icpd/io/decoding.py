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

import contextlib
import io
import logging
import os
import struct
import warnings
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


def _as_hwc(arr: np.ndarray) -> np.ndarray:
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
    arr = _as_hwc(arr)
    if arr.shape[2] in (3, 4):
        arr = arr[:, :, [2, 1, 0, 3][: arr.shape[2]]]  # cv2 BGR(A) -> file order RGB(A)
    return np.ascontiguousarray(arr)


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


# --------------------------------------------------------------------------------------------
# TIFF


def _rasterio_tiff(rasterio: ModuleType, path: Path, colours: bool) -> tuple[np.ndarray, Layout, GeoInfo | None, list[str]]:
    """Pixels (H, W, bands) in file order (palette colours looked up if ``colours``), layout and
    georeferencing, read by rasterio."""
    with warnings.catch_warnings():
        # A plain (non-geo) TIFF is fine: that's what geo=None means.
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            geo = geo_of(ds)
            layout, palette = rasterio_layout(rasterio, ds)
            arr = np.moveaxis(ds.read(), 0, -1)  # bands H W -> H W bands
    if layout.kind == "CMYK" and layout.decoded:
        arr = arr[:, :, :3]  # GDAL converted CMYK to RGB + an opaque alpha, as libtiff does
    elif palette is not None and colours:
        arr = apply_palette(arr[:, :, 0], palette)
    return np.ascontiguousarray(arr), layout, geo, tiff_notes(layout, colours)


def geo_of(ds) -> GeoInfo | None:  # ds: an open rasterio dataset
    """CRS and transform of an open rasterio dataset; None for a plain TIFF."""
    transform = tuple(float(v) for v in tuple(ds.transform)[:6])
    if ds.crs is None and transform == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0):
        return None
    return GeoInfo(crs_wkt=ds.crs.to_wkt() if ds.crs is not None else None, transform=transform)  # type: ignore[arg-type]


def _tiff_layout(h: int, w: int, n: int, dtype: np.dtype, alpha: bool, cmyk: bool,
                 palette: np.ndarray | None, miniswhite: bool = False) -> Layout:
    """One layout rule for both TIFF readers (rasterio and tifffile)."""
    if palette is not None:
        return Layout(h, w, 1, dtype, MINISWHITE if miniswhite else f"palette, {np.dtype(dtype)} indices", decoded=3)
    if cmyk and dtype == np.uint8:  # GDAL converts 8-bit CMYK to RGB (libtiff's formula); so does _cmyk_to_rgb
        return Layout(h, w, 4, dtype, "CMYK", decoded=3)
    # A declared alpha is not trusted (alpha=False): GDAL declares band 4 of every 4-band uint8
    # GeoTIFF alpha by default, RGB+NIR files included. It is said in the refusal.
    kind = "CMYK" if cmyk else f"band {n} declared alpha" if alpha else ""
    return Layout(h, w, n, dtype, kind)


def rasterio_layout(rasterio: ModuleType, ds) -> tuple[Layout, np.ndarray | None]:
    """(layout, palette as (entries, 3) uint8 or None) of an open rasterio dataset."""
    interp = rasterio.enums.ColorInterp
    n, dtype, ci = int(ds.count), np.dtype(ds.dtypes[0]), ds.colorinterp
    palette = None
    if n == 1 and ci[0] == interp.palette:
        cmap = ds.colormap(1)
        palette = np.zeros((max(cmap) + 1, 3), np.uint8)
        for i, rgba in cmap.items():
            palette[i] = rgba[:3]
    structure = ds.tags(ns="IMAGE_STRUCTURE")
    cmyk = structure.get("SOURCE_COLOR_SPACE") == "CMYK" or ci[0] == interp.cyan
    alpha = n in (2, 4) and ci[-1] == interp.alpha and not cmyk
    miniswhite = structure.get("MINISWHITE") == "YES"  # GDAL gives it an inverted grey palette
    return _tiff_layout(ds.height, ds.width, n, dtype, alpha, cmyk, palette, miniswhite), palette


def apply_palette(indices: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W) indices -> (H, W, 3) uint8 colours (indices beyond the table: black)."""
    lut = np.zeros((max(int(indices.max()) + 1, len(palette)), 3), np.uint8)
    lut[: len(palette)] = palette
    return lut[indices]


def tiff_notes(layout: Layout, colours: bool = True) -> list[str]:
    """The notes of a TIFF's decoding (palette looked up, CMYK converted): one wording for every reader."""
    if layout.kind == "CMYK" and layout.decoded:
        return ["CMYK TIFF: converted from CMYK to RGB"]
    if layout.kind == MINISWHITE and colours:
        return ["min-is-white TIFF: grey values inverted (0 is white), as GDAL and viewers show it"]
    if layout.kind.startswith("palette") and colours:
        return ["palette TIFF: index colours looked up in its colour table (3 bands)"]
    return []


def _cmyk_to_rgb(cmyk: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 CMYK -> (H, W, 3) uint8 RGB as libtiff (and so GDAL) converts it:
    ``R = (255 - K) * (255 - C) // 255``."""
    k = 255 - cmyk[:, :, 3:].astype(np.uint16)
    return (k * (255 - cmyk[:, :, :3].astype(np.uint16)) // 255).astype(np.uint8)


def _tifffile_palette(colormap: np.ndarray) -> np.ndarray:
    """TIFF ColorMap (3, 2**bits) uint16 -> (2**bits, 3) uint8, scaled as GDAL does (// 257,
    or as is when every entry is below 256: an 8-bit colour map written by a non-conforming tool)."""
    cmap = colormap.astype(np.int64)
    return (cmap if cmap.max() < 256 else cmap // 257).T.astype(np.uint8)


def _tifffile_tiff(data: bytes, path: Path, what: str, colours: bool
                   ) -> tuple[np.ndarray | None, Layout, list[str], str, str]:
    """(pixels, or None when neither tifffile nor an exact OpenCV read can decode it; layout; notes;
    compression; reader)."""
    import tifffile

    with quiet_tifffile(), tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages[0]
        photometric, extras = int(page.photometric), tuple(int(e) for e in page.extrasamples)
        n, dtype = int(page.samplesperpixel), np.dtype(np.uint8 if page.dtype == np.bool_ else page.dtype)
        palette = _tifffile_palette(page.colormap) if photometric == 3 and page.colormap is not None else None
        miniswhite = photometric == 0 and n == 1 and dtype.kind in "ub"
        if miniswhite:  # GDAL's inverted grey palette, entry for entry
            top = (1 << int(page.bitspersample)) - 1
            palette = np.repeat(((top - np.arange(top + 1)) * 255 // top).astype(np.uint8)[:, None], 3, axis=1)
        alpha = n in (2, 4) and bool(extras) and extras[-1] in (1, 2)  # associated / unassociated alpha
        cmyk = n == 4 and photometric == 5 and int(getattr(page, "inkset", 1)) == 1
        layout = _tiff_layout(page.imagelength, page.imagewidth, n, dtype, alpha, cmyk, palette, miniswhite)
        notes = [NO_GEO_NOTE] if any(t in page.tags for t in GEO_TAGS) else []
        compression = page.compression.name  # with the one predictor tifffile needs imagecodecs for:
        compression += " and the floating-point predictor" if int(page.predictor) == 3 else ""
        if page.axes not in ("YX", "YXS", "SYX"):
            raise ImageError(f"{what} {path}: {layout.describe()}, a TIFF whose first image has axes {page.axes!r}; "
                             "icpd reads 2-D images (one page). Export the scene as a single 2-D GeoTIFF.")
        try:
            arr = page.asarray()
        except (ValueError, ImportError, KeyError, NotImplementedError):  # a codec that needs imagecodecs
            exact = photometric in (1, 2) and not compression.startswith(LOSSY)  # min-is-black or RGB, lossless
            return (_opencv_exact(layout, data) if exact else None), layout, notes, compression, "cv2"
    if page.axes == "SYX":
        arr = np.moveaxis(arr, 0, -1)  # planar S Y X -> Y X S
    arr = _as_hwc(arr.astype(np.uint8) if arr.dtype == np.bool_ else arr)  # bilevel: 0/1, as GDAL reads it
    if layout.kind == "CMYK" and layout.decoded:
        arr = _cmyk_to_rgb(arr)
    elif palette is not None and colours:
        arr = apply_palette(arr[:, :, 0], palette)
    return np.ascontiguousarray(arr), layout, notes + tiff_notes(layout, colours), compression, "tifffile"


def _opencv_exact(layout: Layout, data: bytes) -> np.ndarray | None:
    """OpenCV's pixels for a TIFF only where they equal the file's: 1 band, or 3 RGB bands (it keeps
    one band of 3 min-is-black bands or of 4 uint16 bands, and premultiplies a 4th uint8 band)."""
    if layout.bands not in (1, 3) or layout.kind:
        return None
    arr = cv2_decode(data)
    if arr is None or arr.shape != (layout.height, layout.width, layout.bands) or arr.dtype != layout.dtype:
        return None
    return arr


def _tiff(data: bytes, path: Path, what: str, colours: bool) -> Decoded | str:
    """A TIFF decoded the same way with or without rasterio; why not, when no TIFF reader can parse it."""
    rasterio = import_rasterio()
    if rasterio is not None:
        with contextlib.suppress(rasterio.errors.RasterioError):
            arr, layout, geo, notes = _rasterio_tiff(rasterio, path, colours)
            return Decoded(arr, layout, geo, "rasterio", tuple(notes))
    try:
        arr, layout, notes, compression, reader = _tifffile_tiff(data, path, what, colours)
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types on files it cannot parse
        return f"{type(exc).__name__}: {exc}"
    if arr is None:
        why = (f"which icpd reads without rasterio only for 1-band or 3-band RGB files. Install the geo extra "
               f"({GEO_EXTRA_HINT}) or" if rasterio is None else "which rasterio could not open either. Try to")
        predictor = " -co PREDICTOR=1" if "predictor" in compression else ""
        raise ImageError(f"{what} {path}: {layout.describe()}, a TIFF compressed with {compression}, {why} re-save "
                         f"it with DEFLATE: gdal_translate -co COMPRESS=DEFLATE{predictor} in.tif out.tif.")
    return Decoded(arr, layout, None, reader, tuple(notes))


def decode_file(path: str | os.PathLike[str], what: str = "image", palette_colours: bool = True) -> Decoded:
    """Decode ``path`` to (H, W, bands) in **file band order**, with its layout and georeferencing.

    ``palette_colours=False`` keeps a palette TIFF's indices (H, W, 1) (class-id label maps); a
    palette PNG is always expanded (OpenCV cannot give its indices).

    Raises:
        ImageError: missing, unreadable, empty or undecodable file (the message says what to do).
    """
    path = Path(path)
    data = check_file(path, what)
    is_tiff = path.suffix.lower() in TIFF_SUFFIXES or data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
    decoded = _tiff(data, path, what, palette_colours) if is_tiff else ""
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
        raise ImageError(f"{what} {path} could not be decoded as an image (starts with {data[:8]!r}). {fix}")
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        arr, layout, notes = _png(data, arr)
    elif data[:2] == b"\xff\xd8":
        arr, layout, notes = _jpeg(data, arr)
    else:  # another format OpenCV knows (BMP, WebP, ...) under an image suffix
        layout, notes = Layout(arr.shape[0], arr.shape[1], arr.shape[2], arr.dtype), []
    return Decoded(arr, layout, None, "cv2", tuple(notes))
