"""Reading scenes and masks, writing results without leaving half-written files.

Every image that reaches the model is an (H, W, 3) uint8 RGB array. :func:`read_image` gets
there from the formats people actually hand us, and records each conversion it made in
``Raster.notes`` so the CLI can tell the user. The rules:

* **Bands.** Band numbers are **1-based and in file order** (GDAL / rasterio / QGIS
  convention: "band 4 is NIR"). One band is replicated to RGB. Three bands are taken as RGB.
  Four bands in a PNG are RGBA (PNG has no other 4-channel layout): alpha is dropped. Four
  bands in a TIFF are ambiguous (RGBA? RGB+NIR? BGR+NIR?) and are refused unless the caller
  says which to use with ``bands=(1, 2, 3)``; so are 2 or more than 4 bands.
* **uint8** is used as is.
* **uint16** is linearly stretched so that the image's own 2nd percentile maps to 0 and its
  98th percentile to 255 (clipped), with one pair of limits for all three bands. Why not
  ``/ 257``: most 16-bit remote-sensing products hold 10-14-bit sensor counts or scaled
  reflectance, which ``/ 257`` turns into a nearly black image the model was never trained
  on. Why one pair for all bands: per-band stretches shift the hue. The price: the mapping
  depends on the image, so absolute radiometry is not comparable between two files. The
  limits are reported in ``notes``.
* **float** (float16/32/64) is accepted only when every value is finite and in [0, 1], then
  scaled by 255 and rounded. Anything else (reflectance > 1, dB, NaN nodata) is refused.
* **Any other dtype** (int8, int16, int32, uint32, ...) is refused.

* **EXIF orientation** of JPEGs is applied, as every viewer does (a phone photo taken upright
  is stored sideways with a tag saying so), and noted. Masks are read as stored (PNG has none).

Decoding uses ``cv2.imdecode`` on the file's bytes (same codecs as ``cv2.imread``, but it works
with non-ASCII paths and lets us tell "can't read the file" from "not an image"), with OpenCV's
log level at ERROR while it runs (its libtiff warnings, e.g. "Unknown field with tag 33550" for
every GeoTIFF key, are noise to a user).

TIFFs are read with rasterio when it is installed (``pip install 'icpd[geo]'``): pixels in file
band order plus georeferencing (CRS + affine transform); OpenCV is the fallback for files
rasterio cannot open. Without rasterio, TIFFs still load through OpenCV, just without ``geo``.
rasterio is always imported lazily, inside the function that needs it.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np

from icpd.io.exif import ORIENTATION_TEXT, apply_orientation, jpeg_orientation

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
TIFF_SUFFIXES: tuple[str, ...] = (".tif", ".tiff")
GEO_EXTRA_HINT = "pip install 'icpd[geo]'"

# Percentiles of the uint16 -> uint8 stretch (see the module docstring for why).
STRETCH_PERCENTILES: tuple[float, float] = (2.0, 98.0)


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


@dataclass(frozen=True, eq=False)
class Raster:
    """A decoded scene.

    Attributes:
        pixels: (H, W, 3) uint8 RGB, C-contiguous.
        path: the file it came from (None if built in memory).
        geo: georeferencing, only for GeoTIFFs read while rasterio is installed.
        notes: one human-readable line per conversion applied while reading.
    """

    pixels: np.ndarray
    path: Path | None = None
    geo: GeoInfo | None = None
    notes: tuple[str, ...] = ()

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


# --------------------------------------------------------------------------------------------
# optional rasterio


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


def _read_geo(
    rasterio: ModuleType, path: Path, read_pixels: bool
) -> tuple[GeoInfo | None, np.ndarray | None]:
    """CRS/transform of ``path`` and, if asked (cv2 failed), its pixels (H, W, bands) in file order."""
    with warnings.catch_warnings():
        # A plain (non-geo) TIFF is fine: that's what geo=None means.
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            transform = tuple(float(v) for v in tuple(ds.transform)[:6])
            crs = ds.crs
            geo = None
            if crs is not None or transform != (1.0, 0.0, 0.0, 0.0, 1.0, 0.0):
                geo = GeoInfo(crs_wkt=crs.to_wkt() if crs is not None else None, transform=transform)
            pixels = np.moveaxis(ds.read(), 0, -1) if read_pixels else None  # bands H W -> H W bands
    return geo, pixels


# --------------------------------------------------------------------------------------------
# decoding


def _check_file(path: Path, what: str) -> bytes:
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


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """OpenCV's log level at ERROR for the block (it is process-wide: restored afterwards)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def _cv2_decode(data: bytes) -> np.ndarray | None:
    """(H, W) or (H, W, bands) in file band order, or None when OpenCV cannot decode ``data``."""
    try:
        with quiet_opencv():
            arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    if arr is not None and arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[:, :, [2, 1, 0, 3][: arr.shape[2]]]  # cv2 BGR(A) -> file order RGB(A)
    return arr


def decode(path: Path, what: str) -> tuple[np.ndarray, GeoInfo | None, str]:
    """Decode ``path`` to (H, W) or (H, W, bands) in **file band order**, plus geo and reader
    ("rasterio" for TIFFs when it is installed and can open the file, else "cv2")."""
    data = _check_file(path, what)
    arr, geo, reader = None, None, "cv2"
    is_tiff = path.suffix.lower() in TIFF_SUFFIXES
    rasterio = import_rasterio() if is_tiff else None
    if rasterio is not None:
        try:
            geo, arr = _read_geo(rasterio, path, read_pixels=True)
            reader = "rasterio"
        except rasterio.errors.RasterioError:
            arr = None  # OpenCV may still read it
    if arr is None:
        arr = _cv2_decode(data)
    if arr is None:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            fix = f"icpd reads {', '.join(IMAGE_SUFFIXES)} files."
        elif is_tiff and rasterio is None:
            fix = (
                "OpenCV cannot decode this TIFF (more than 4 bands or an unusual layout?); "
                f"installing the geo extra lets icpd read it with rasterio: {GEO_EXTRA_HINT}"
            )
        else:
            fix = "Is it truncated (an interrupted copy or download?) or not really an image? Re-export it."
        head = data[:8]
        raise ImageError(f"{what} {path} could not be decoded as an image (starts with {head!r}). {fix}")
    return np.ascontiguousarray(arr), geo, reader


def parse_bands(text: str | tuple[int, ...] | None) -> tuple[int, int, int] | None:
    """``"4,3,2"`` (the ``--bands`` option; spaces allowed) -> ``(4, 3, 2)``: three 1-based band numbers.

    Whether the numbers exist in a file is checked when it is read (:func:`read_image`).

    Raises:
        ImageError: not three positive integers.
    """
    if text is None or isinstance(text, tuple):
        return text
    parts = [t.strip() for t in text.replace(" ", ",").split(",") if t.strip()]
    try:
        bands = tuple(int(t) for t in parts)
    except ValueError:
        bands = ()
    if len(bands) != 3 or min(bands) < 1:
        raise ImageError(f"bands {text!r}: expected three 1-based band numbers in R,G,B order, e.g. 4,3,2 "
                         "(band 1 is the first band of the file)")
    return bands  # type: ignore[return-value]


def describe_array(arr: np.ndarray) -> str:
    bands = 1 if arr.ndim == 2 else arr.shape[2]
    return f"{arr.shape[0]}x{arr.shape[1]} (HxW), {bands} band(s), {arr.dtype}"


def _select_bands(arr: np.ndarray, path: Path, bands: tuple[int, ...] | None, notes: list[str]) -> np.ndarray:
    """(H, W) or (H, W, n) in file order -> (H, W, 3), following the band rules above."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    n = arr.shape[2]
    if bands is not None:
        bands = tuple(int(b) for b in bands)
        if len(bands) != 3 or not all(1 <= b <= n for b in bands):
            raise ImageError(
                f"{path}: bands={bands} is not valid for a file with {n} band(s) ({describe_array(arr)}). "
                f"Pass three 1-based band numbers between 1 and {n}, in R, G, B order, e.g. --bands 1,2,3 "
                "(Python: bands=(1, 2, 3))."
            )
        if bands != (1, 2, 3) or n != 3:
            notes.append(f"used bands {bands} of {n} (1-based, file order) as R, G, B")
        return arr[:, :, [b - 1 for b in bands]]
    if n == 1:
        notes.append("grayscale: replicated to R, G, B")
        return np.repeat(arr, 3, axis=2)
    if n == 3:
        return arr
    if n == 4 and path.suffix.lower() == ".png":
        notes.append("RGBA PNG: alpha channel dropped (transparent pixels keep their colour values)")
        return arr[:, :, :3]
    kind = "RGBA? RGB+NIR? BGR+NIR?" if n == 4 else "multispectral?"
    raise ImageError(
        f"{path}: found {n} bands ({describe_array(arr)}); which three are red, green, blue is ambiguous "
        f"({kind}). Say which with --bands R,G,B (Python: bands=(R, G, B)), 1-based band numbers in file "
        f"order, e.g. --bands 1,2,3 for the first three."
    )


def ordinal(value: float) -> str:
    """2 -> "2nd", 98 -> "98th", 1 -> "1st", 11 -> "11th", 2.5 -> "2.5th"."""
    if value != int(value):
        return f"{value:g}th"
    n = int(value)
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _stretch_uint16(arr: np.ndarray, notes: list[str]) -> np.ndarray:
    """uint16 -> uint8 by the joint 2nd..98th percentile stretch, via a 65536-entry lookup table."""
    hist = np.bincount(arr.ravel(), minlength=65536)
    cdf = np.cumsum(hist)
    lo_q, hi_q = STRETCH_PERCENTILES
    lo = int(np.searchsorted(cdf, cdf[-1] * lo_q / 100.0))
    hi = int(np.searchsorted(cdf, cdf[-1] * hi_q / 100.0))
    if hi <= lo:  # almost constant image: fall back to the full range present
        lo, hi = int(arr.min()), int(arr.max())
    if hi <= lo:  # constant image: keep its level on the 8-bit scale
        notes.append(f"uint16 constant image ({lo}): mapped by /257")
        return np.full(arr.shape, round(lo / 257), dtype=np.uint8)
    lut = np.clip((np.arange(65536, dtype=np.float64) - lo) * (255.0 / (hi - lo)), 0, 255)
    notes.append(
        f"uint16: stretched [{lo}, {hi}] ({ordinal(lo_q)}..{ordinal(hi_q)} percentile over all bands) "
        "to [0, 255], clipped"
    )
    return np.round(lut).astype(np.uint8)[arr]


def _to_uint8(arr: np.ndarray, path: Path, notes: list[str]) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return _stretch_uint16(arr, notes)
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.isfinite(arr)
        if not finite.all():
            raise ImageError(
                f"{path}: float image ({describe_array(arr)}) contains {int((~finite).sum())} NaN/inf "
                "value(s) (nodata?). Fill them and rescale to [0, 1], or convert to uint8, e.g. "
                "gdal_translate -ot Byte -scale -a_nodata 0."
            )
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise ImageError(
                f"{path}: float image ({describe_array(arr)}) has values in [{lo:g}, {hi:g}]; icpd only "
                "accepts float imagery in [0, 1]. Rescale it to [0, 1] or convert to uint8, e.g. "
                "gdal_translate -ot Byte -scale."
            )
        notes.append(f"{arr.dtype} in [0, 1]: scaled by 255 and rounded to uint8")
        return np.round(arr.astype(np.float32) * 255.0).astype(np.uint8)
    raise ImageError(
        f"{path}: unsupported pixel type {arr.dtype} ({describe_array(arr)}). icpd reads uint8, uint16 "
        "and float in [0, 1]. Convert it, e.g. gdal_translate -ot Byte -scale."
    )


def read_image(path: str | os.PathLike[str], bands: tuple[int, int, int] | None = None) -> Raster:
    """Read a PNG/JPEG/TIFF scene as (H, W, 3) uint8 RGB, converting as the module docstring says.

    Args:
        path: the image file.
        bands: three **1-based** band numbers in file order to use as R, G, B; required for
            TIFFs with 2 or 4+ bands, optional otherwise (e.g. ``(3, 2, 1)`` for a BGR file).

    Returns:
        a :class:`Raster` with ``pixels`` (H, W, 3) uint8, ``geo`` for GeoTIFFs when rasterio
        is installed, and ``notes`` listing the conversions made.

    Raises:
        ImageError: missing/unreadable/corrupt file, or pixels it refuses (ambiguous bands,
            out-of-range float, unsupported dtype); the message names the file and the fix.
    """
    path = Path(path)
    arr, geo, _ = decode(path, "image")
    notes: list[str] = []
    if path.suffix.lower() in (".jpg", ".jpeg"):
        with path.open("rb") as fh:
            orientation = jpeg_orientation(fh.read(1 << 16))  # EXIF lives in the first 64 KiB
        if orientation != 1:
            arr = np.ascontiguousarray(apply_orientation(arr, orientation))
            notes.append(f"EXIF orientation {orientation}: {ORIENTATION_TEXT[orientation]} to show it upright, "
                         "as image viewers do")
    arr = _select_bands(arr, path, bands, notes)
    arr = _to_uint8(arr, path, notes)
    return Raster(pixels=np.ascontiguousarray(arr), path=path, geo=geo, notes=tuple(notes))


