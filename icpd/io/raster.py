"""Reading scenes as (H, W, 3) uint8 RGB, saying what was converted and refusing what is ambiguous.

Every image that reaches the model is an (H, W, 3) uint8 RGB array. :func:`read_image` gets
there from the formats people actually hand us (decoded by :mod:`icpd.io.decoding`, the same way
with or without the geo extra), and records each conversion it made in ``Raster.notes`` so the
CLI can tell the user. Every refusal states the file's real size (HxW), band count and pixel
type. The rules (the window reader :class:`icpd.io.windows.WindowReader` applies the same ones,
through the same functions):

* **Bands.** Band numbers are **1-based and in file order** (GDAL / rasterio / QGIS
  convention: "band 4 is NIR"). One band is replicated to RGB. Three bands are taken as RGB.
  The alpha band of a PNG (grayscale+alpha, RGBA) is dropped, noted. Palette files are read as
  their colours (3 bands), CMYK JPEGs and 8-bit CMYK TIFFs as RGB, noted. Four bands in a TIFF
  are ambiguous (RGBA? RGB+NIR? BGR+NIR?), even when band 4 is declared alpha (GDAL declares it
  for every 4-band uint8 GeoTIFF it writes); so are 2 or more than 4 bands, and 16-bit CMYK
  TIFFs: all are refused unless the caller says which to use with ``bands=(1, 2, 3)``.
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

TIFFs are read with rasterio when it is installed (``pip install 'icpd[geo]'``): pixels plus
georeferencing (CRS + affine transform). Without it the same pixels come from tifffile, and a
GeoTIFF's georeferencing is dropped with a note saying which extra keeps it.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from icpd.errors import ParamMessage, arg
from icpd.io.decoding import (
    GEO_EXTRA_HINT,
    IMAGE_SUFFIXES,
    TIFF_SUFFIXES,
    GeoInfo,
    ImageError,
    Layout,
    decode_file,
    import_rasterio,
    quiet_opencv,
)
from icpd.io.exif import ORIENTATION_TEXT, apply_orientation, jpeg_orientation

__all__ = [
    "BANDS_RULE", "GEO_EXTRA_HINT", "IMAGE_SUFFIXES", "STRETCH_PERCENTILES", "TIFF_SUFFIXES", "BandsError",
    "GeoInfo", "ImageError", "Layout",
    "Raster", "decode", "describe_array", "import_rasterio", "parse_bands", "plan_bands", "quiet_opencv",
    "read_image", "to_uint8",
]

# Percentiles of the uint16 -> uint8 stretch (see the module docstring for why).
STRETCH_PERCENTILES: tuple[float, float] = (2.0, 98.0)


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


def decode(path: Path, what: str, data: bytes | None = None) -> tuple[np.ndarray, GeoInfo | None, str]:
    """(H, W) or (H, W, bands) as OpenCV lays a PNG out (grayscale+alpha as 4 bands), plus geo and
    reader; for mask and label files (a palette TIFF's indices kept: class ids). Scenes use
    :func:`read_image`, which knows the file's layout."""
    dec = decode_file(path, what, palette_colours=False, data=data)
    arr = dec.pixels
    if dec.layout.kind == "grayscale+alpha" and path.suffix.lower() == ".png":
        arr = arr[:, :, [0, 0, 0, 1]]
    return (arr[:, :, 0] if arr.shape[2] == 1 else arr), dec.geo, dec.reader


BANDS_RULE = ("expected three 1-based band numbers in R,G,B order, e.g. 4,3,2 "
              "(band 1 is the first band of the file)")


class BandsError(ParamMessage, ImageError):
    """``bands`` is not three 1-based band numbers: one message (:data:`BANDS_RULE`) wherever it came from."""


def parse_bands(value: str | Sequence[int] | None) -> tuple[int, int, int] | None:
    """The one reader of a band choice: ``"4,3,2"`` (``--bands``; spaces allowed) or three integers in
    any sequence (a tuple; a list or numpy array, as Ray hands a tuple to its workers) -> ``(4, 3, 2)``,
    1-based band numbers in file order used as R, G, B. None (the file's own rules) stays None.

    Whether the numbers exist in a file is checked when it is read (:func:`plan_bands`).

    Raises:
        BandsError: not three positive integers (``bands='4,3': expected three 1-based ...``).
    """
    if value is None:
        return None
    if isinstance(value, str):
        shown, parts = repr(value), [t.strip() for t in value.replace(" ", ",").split(",") if t.strip()]
        try:
            bands: tuple[int, ...] = tuple(int(t) for t in parts)
        except ValueError:
            bands = ()
    else:
        try:
            items = list(value)
        except TypeError:  # a number, not a sequence
            items = [value]
        shown = f"({', '.join(str(b) for b in items)})"
        whole = all(isinstance(b, numbers.Integral) and not isinstance(b, bool) for b in items)
        bands = tuple(int(b) for b in items) if whole else ()
    if len(bands) != 3 or min(bands) < 1:
        raise BandsError(f"{arg('bands', shown)}: {BANDS_RULE}")
    return bands  # type: ignore[return-value]


def describe_array(arr: np.ndarray) -> str:
    """``"300x400 (HxW), 4 band(s), uint16"`` of a decoded (H, W) or (H, W, bands) array."""
    bands = 1 if arr.ndim == 2 else arr.shape[2]
    return f"{arr.shape[0]}x{arr.shape[1]} (HxW), {bands} band(s), {arr.dtype}"


def _format(path: Path) -> str:
    return {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), "TIFF")


def plan_bands(layout: Layout, path: Path,
               bands: Sequence[int] | None) -> tuple[tuple[int, int, int], list[str]]:
    """The three 1-based band numbers (of the decoded bands, file order) to use as R, G, B, and
    the notes saying so, following the band rules above.

    Raises:
        ImageError: invalid ``bands``, or an ambiguous layout without ``bands``; the message
            states the file's size, band count and pixel type and what to pass.
    """
    n, what = layout.count, f"image {path}: {layout.describe()}"
    bands = parse_bands(bands)  # three positive integers, or BandsError (the same message everywhere)
    if bands is not None:
        if not all(b <= n for b in bands):  # numbers the file does not have
            example = [str(min(i, n)) for i in (1, 2, 3)]
            raise ImageError(
                f"{what}; bands={bands} is not valid for a file with {n} band(s). Pass three 1-based band "
                f"numbers between 1 and {n}, in R, G, B order, e.g. --bands {','.join(example)} "
                f"(Python: bands=({', '.join(example)}))."
            )
        used = f"used bands {bands} of {n} (1-based, file order) as R, G, B"
        notes = [] if bands == (1, 2, 3) and n == 3 else [used]
        return bands, notes  # type: ignore[return-value]
    if n == 1:
        return (1, 1, 1), ["grayscale: replicated to R, G, B"]
    if n == 2 and layout.alpha:
        return (1, 1, 1), [(f"grayscale+alpha {_format(path)}: alpha band dropped (transparent pixels keep "
                            "their grey values), grey replicated to R, G, B")]
    if n == 3:
        return (1, 2, 3), []
    if n == 4 and layout.alpha:
        return (1, 2, 3), [(f"RGBA {_format(path)}: alpha channel dropped (transparent pixels keep their "
                            "colour values)")]
    if layout.kind == "CMYK":
        bits = np.dtype(layout.dtype).itemsize * 8
        raise ImageError(f"{what}: a {bits}-bit CMYK TIFF (print colours), not red, green, blue bands; icpd "
                         "converts only 8-bit CMYK. Convert it to RGB, or pick three bands with --bands "
                         "(Python: bands=(...)), 1-based in file order.")
    kind = "RGBA? RGB+NIR? BGR+NIR?" if n == 4 else "multispectral?"
    if layout.kind.endswith("declared alpha"):
        kind += f" Band {n} is declared alpha, which GDAL does by default for 4-band uint8 files"
    raise ImageError(
        f"{what}: found {n} bands; which three are red, green, blue is ambiguous ({kind}). Say which with "
        f"--bands R,G,B (Python: bands=(R, G, B)), 1-based band numbers in file order, e.g. --bands 1,2,3 "
        "for the first three."
    )


def ordinal(value: float) -> str:
    """2 -> "2nd", 98 -> "98th", 1 -> "1st", 11 -> "11th", 2.5 -> "2.5th"."""
    if value != int(value):
        return f"{value:g}th"
    n = int(value)
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def stretch_lut(hist: np.ndarray, notes: list[str]) -> np.ndarray:
    """The uint16 -> uint8 lookup table (65536,) of the joint 2nd..98th percentile stretch, from the
    histogram (65536,) of the used bands; the note gives the limits."""
    cdf = np.cumsum(hist)
    lo_q, hi_q = STRETCH_PERCENTILES
    lo = int(np.searchsorted(cdf, cdf[-1] * lo_q / 100.0))
    hi = int(np.searchsorted(cdf, cdf[-1] * hi_q / 100.0))
    if hi <= lo:  # almost constant image: fall back to the full range present
        present = np.flatnonzero(hist)
        lo, hi = int(present[0]), int(present[-1])
    if hi <= lo:  # constant image: keep its level on the 8-bit scale
        notes.append(f"uint16 constant image ({lo}): mapped by /257")
        return np.full(65536, round(lo / 257), dtype=np.uint8)
    lut = np.clip((np.arange(65536, dtype=np.float64) - lo) * (255.0 / (hi - lo)), 0, 255)
    notes.append(
        f"uint16: stretched [{lo}, {hi}] ({ordinal(lo_q)}..{ordinal(hi_q)} percentile over all bands) "
        "to [0, 255], clipped"
    )
    return np.round(lut).astype(np.uint8)


def float_note(dtype: np.dtype, lo: float, hi: float, nonfinite: int, layout: Layout, path: Path) -> str:
    """The note for float pixels in [0, 1]; ImageError (with the file's layout) for anything else."""
    if nonfinite:
        raise ImageError(
            f"image {path}: {layout.describe()}; the float pixels contain {nonfinite} NaN/inf value(s) "
            "(nodata?). Fill them and rescale to [0, 1], or convert to uint8, e.g. gdal_translate -ot Byte "
            "-scale -a_nodata 0."
        )
    if lo < 0.0 or hi > 1.0:
        raise ImageError(
            f"image {path}: {layout.describe()}; the float pixels are in [{lo:g}, {hi:g}]; icpd only accepts "
            "float imagery in [0, 1]. Rescale it to [0, 1] or convert to uint8, e.g. gdal_translate -ot Byte "
            "-scale."
        )
    return f"{np.dtype(dtype)} in [0, 1]: scaled by 255 and rounded to uint8"


def check_dtype(dtype: np.dtype, layout: Layout, path: Path) -> None:
    """ImageError for a pixel type icpd does not read (all but uint8, uint16 and float)."""
    if dtype not in (np.uint8, np.uint16) and not np.issubdtype(dtype, np.floating):
        raise ImageError(
            f"image {path}: {layout.describe()}; unsupported pixel type {np.dtype(dtype)}. icpd reads uint8, "
            "uint16 and float in [0, 1]. Convert it, e.g. gdal_translate -ot Byte -scale."
        )


def to_uint8(arr: np.ndarray, layout: Layout, path: Path, notes: list[str]) -> np.ndarray:
    """(H, W, 3) of the used bands -> uint8 by the dtype rules above; notes appended."""
    check_dtype(arr.dtype, layout, path)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return stretch_lut(np.bincount(arr.ravel(), minlength=65536), notes)[arr]
    finite = np.isfinite(arr)
    nonfinite = int(arr.size - np.count_nonzero(finite))
    lo, hi = (float(arr.min()), float(arr.max())) if not nonfinite else (0.0, 0.0)
    notes.append(float_note(arr.dtype, lo, hi, nonfinite, layout, path))
    return np.round(arr.astype(np.float32) * 255.0).astype(np.uint8)


def read_image(path: str | os.PathLike[str], bands: tuple[int, int, int] | None = None,
               data: bytes | None = None) -> Raster:
    """Read a PNG/JPEG/TIFF scene as (H, W, 3) uint8 RGB, converting as the module docstring says.

    Args:
        path: the image file.
        bands: three **1-based** band numbers in file order to use as R, G, B; required for
            files with 2 or 4+ bands and no declared alpha, optional otherwise (e.g. ``(3, 2, 1)``
            for a BGR file).
        data: the file's bytes, already in memory (a request body): decoded without touching the
            file system; ``path`` then only names it in messages and gives its suffix.

    Returns:
        a :class:`Raster` with ``pixels`` (H, W, 3) uint8, ``geo`` for GeoTIFFs when rasterio
        is installed, and ``notes`` listing the conversions made.

    Raises:
        ImageError: missing/unreadable/corrupt file, or pixels it refuses (ambiguous bands,
            out-of-range float, unsupported dtype); the message names the file, its size, band
            count and pixel type, and the fix.
    """
    path = Path(path)
    bands = parse_bands(bands)  # refused before the file is decoded
    dec = decode_file(path, "image", data=data)
    arr, notes = dec.pixels, list(dec.notes)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        if data is None:
            with path.open("rb") as fh:
                data = fh.read(1 << 16)
        orientation = jpeg_orientation(data[: 1 << 16])  # EXIF lives in the first 64 KiB
        if orientation != 1:
            arr = np.ascontiguousarray(apply_orientation(arr, orientation))
            notes.append(f"EXIF orientation {orientation}: {ORIENTATION_TEXT[orientation]} to show it "
                         f"upright, as image viewers do (stored {dec.layout.height}x{dec.layout.width}, now "
                         f"{arr.shape[0]}x{arr.shape[1]} HxW)")
    indexes, band_notes = plan_bands(dec.layout, path, bands)
    notes += band_notes
    arr = to_uint8(arr[:, :, [i - 1 for i in indexes]], dec.layout, path, notes)
    return Raster(pixels=np.ascontiguousarray(arr), path=path, geo=dec.geo, notes=tuple(notes))
