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

Pixels are returned as stored: EXIF orientation is ignored, so an image and its mask stay
aligned. Decoding uses ``cv2.imdecode`` on the file's bytes (same codecs as ``cv2.imread``,
but it works with non-ASCII paths and lets us tell "can't read the file" from "not an image").

GeoTIFF georeferencing (CRS + affine transform) is read when rasterio is installed
(``pip install 'icpd[geo]'``); without it, TIFFs still load, just without ``geo``. rasterio is
always imported lazily, inside the function that needs it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from xml.sax.saxutils import escape

import cv2
import numpy as np

__all__ = [
    "GEO_EXTRA_HINT",
    "IMAGE_SUFFIXES",
    "GeoInfo",
    "ImageError",
    "Raster",
    "atomic_write",
    "list_inputs",
    "read_image",
    "read_mask",
    "write_geotiff_like",
    "write_label_png",
    "write_png",
]

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


def _rasterio(needed_for: str | None = None) -> ModuleType | None:
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


def _decode(path: Path, what: str) -> tuple[np.ndarray, GeoInfo | None, str]:
    """Decode ``path`` to (H, W) or (H, W, bands) in **file band order**, plus geo and reader."""
    data = _check_file(path, what)
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        arr = None
    if arr is not None and arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[:, :, [2, 1, 0, 3][: arr.shape[2]]]  # cv2 BGR(A) -> file order RGB(A)
    reader = "cv2"

    geo = None
    is_tiff = path.suffix.lower() in TIFF_SUFFIXES
    rasterio = _rasterio() if is_tiff else None
    if rasterio is not None:
        try:
            geo, rio_pixels = _read_geo(rasterio, path, read_pixels=arr is None)
        except rasterio.errors.RasterioError:
            rio_pixels = None
        if arr is None and rio_pixels is not None:
            arr, reader = rio_pixels, "rasterio"

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


def _describe(arr: np.ndarray) -> str:
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
                f"{path}: bands={bands} is not valid for a file with {n} band(s) ({_describe(arr)}). "
                f"Pass three 1-based band numbers between 1 and {n}, in R, G, B order, e.g. bands=(1, 2, 3)."
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
        f"{path}: found {n} bands ({_describe(arr)}); which three are red, green, blue is ambiguous "
        f"({kind}). Pass bands=(R, G, B) with 1-based band numbers in file order, "
        f"e.g. bands=(1, 2, 3) for the first three."
    )


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
        f"uint16: stretched [{lo}, {hi}] ({lo_q:g}th..{hi_q:g}th percentile over all bands) "
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
                f"{path}: float image ({_describe(arr)}) contains {int((~finite).sum())} NaN/inf "
                "value(s) (nodata?). Fill them and rescale to [0, 1], or convert to uint8, e.g. "
                "gdal_translate -ot Byte -scale -a_nodata 0."
            )
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise ImageError(
                f"{path}: float image ({_describe(arr)}) has values in [{lo:g}, {hi:g}]; icpd only "
                "accepts float imagery in [0, 1]. Rescale it to [0, 1] or convert to uint8, e.g. "
                "gdal_translate -ot Byte -scale."
            )
        notes.append(f"{arr.dtype} in [0, 1]: scaled by 255 and rounded to uint8")
        return np.round(arr.astype(np.float32) * 255.0).astype(np.uint8)
    raise ImageError(
        f"{path}: unsupported pixel type {arr.dtype} ({_describe(arr)}). icpd reads uint8, uint16 "
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
    arr, geo, reader = _decode(path, "image")
    notes: list[str] = []
    if reader != "cv2":
        notes.append(f"decoded with {reader}")
    arr = _select_bands(arr, path, bands, notes)
    arr = _to_uint8(arr, path, notes)
    return Raster(pixels=np.ascontiguousarray(arr), path=path, geo=geo, notes=tuple(notes))


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
    arr, _, _ = _decode(path, "mask")
    if arr.ndim == 3:
        if arr.shape[2] == 4 and path.suffix.lower() == ".png":
            arr = arr[:, :, :3]  # RGBA PNG: the alpha is not part of the mask
        if arr.shape[2] != 1 and not (arr == arr[:, :, :1]).all():
            raise ImageError(
                f"mask {path}: {_describe(arr)} with channels that differ, so it is not a binary "
                "mask. Save a single-channel (grayscale) PNG with 0 = background, 255 (or 1) = object."
            )
        arr = arr[:, :, 0]
    if not np.issubdtype(arr.dtype, np.integer):
        raise ImageError(
            f"mask {path}: {_describe(arr)}; masks must be integer 0/1 or 0/255. "
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


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only if the body succeeds.

    The temporary file (``.<name>.<random>.tmp``, hidden and without an image suffix so
    :func:`list_inputs` never picks it up) lives in the same folder, so ``os.replace`` is
    atomic: readers see the old file or the new one, never a half-written one. If the body
    raises, the temporary file is deleted and an existing ``path`` is left untouched.
    The file is created with the usual umask-derived permissions.
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {parent} does not exist. Create it first.")
    while True:
        tmp = parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        break
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_write(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_png(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write ``array`` as a PNG, atomically (see :func:`atomic_write`).

    Args:
        path: output file; must end in ``.png``.
        array: (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA; uint8 or uint16.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"write_png: {path} must end in .png (got suffix {path.suffix!r}).")
    array = np.asarray(array)
    if array.dtype not in (np.uint8, np.uint16) or not (
        array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))
    ):
        raise ValueError(
            f"write_png {path}: got shape {array.shape} {array.dtype}; expected (H, W), (H, W, 3) or "
            "(H, W, 4) uint8/uint16. Convert first, e.g. np.clip(x, 0, 255).astype(np.uint8)."
        )
    if array.ndim == 3:
        array = array[:, :, [2, 1, 0, 3][: array.shape[2]]]  # RGB(A) -> cv2 BGR(A)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:
        raise ValueError(f"write_png {path}: OpenCV failed to encode a {array.shape} {array.dtype} array.")
    _write_bytes_atomic(path, buf.tobytes())
    return path


def _world_file_lines(transform: tuple[float, ...]) -> str:
    """ESRI world file (A, D, B, E, C, F) from an affine whose origin is the top-left pixel corner.

    World files locate the **centre** of the top-left pixel, hence the half-pixel shift.
    """
    a, b, c, d, e, f = transform
    values = (a, d, b, e, c + 0.5 * a + 0.5 * b, f + 0.5 * d + 0.5 * e)
    return "".join(f"{v!r}\n" for v in values)


def write_label_png(
    path: str | os.PathLike[str], labels: np.ndarray, like: Raster | None = None
) -> list[Path]:
    """Write a label map as a single-channel uint8 PNG, keeping the source's georeferencing.

    Values are written as they are (0/1 masks stay 0/1; multiply by 255 first for a visible
    mask). When ``like.geo`` is set, GIS tools (GDAL, QGIS) get the georeferencing from two
    small sidecars that need no rasterio: a world file ``<stem>.pgw`` (transform) and a
    GDAL ``<name>.aux.xml`` holding the CRS.

    Args:
        path: output ``.png``.
        labels: (H, W) bool or integer array with values in [0, 255].
        like: the source scene; its height and width must match ``labels``.

    Returns:
        the files written, PNG first.
    """
    path = Path(path)
    labels = np.asarray(labels)
    if labels.ndim != 2 or not (labels.dtype == np.bool_ or np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(
            f"write_label_png {path}: expected an (H, W) integer label map, got shape "
            f"{labels.shape} {labels.dtype}."
        )
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) > 255):
        raise ValueError(
            f"write_label_png {path}: labels range [{int(labels.min())}, {int(labels.max())}] does not "
            "fit a uint8 PNG (0..255). Remap the classes or write a GeoTIFF with write_geotiff_like."
        )
    if like is not None and labels.shape != like.pixels.shape[:2]:
        raise ValueError(
            f"write_label_png {path}: labels are {labels.shape[0]}x{labels.shape[1]} (HxW) but the "
            f"source {like.path} is {like.height}x{like.width}."
        )
    written = [write_png(path, labels.astype(np.uint8))]
    if like is not None and like.geo is not None:
        world = path.with_suffix(".pgw")
        _write_bytes_atomic(world, _world_file_lines(like.geo.transform).encode())
        written.append(world)
        if like.geo.crs_wkt is not None:
            aux = path.with_name(path.name + ".aux.xml")
            xml = f"<PAMDataset>\n  <SRS>{escape(like.geo.crs_wkt)}</SRS>\n</PAMDataset>\n"
            _write_bytes_atomic(aux, xml.encode())
            written.append(aux)
    return written


def write_geotiff_like(src: Raster, array: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write ``array`` as a GeoTIFF with ``src``'s CRS and transform (needs rasterio).

    Args:
        src: the scene the array was computed from; must carry ``geo``.
        array: (H, W) or (C, H, W), same H, W as ``src``; any dtype GDAL supports
            (uint8 labels, float32 probabilities, ...).
        path: output ``.tif``; written atomically, deflate-compressed.

    Raises:
        ImportError: rasterio is missing (install with ``pip install 'icpd[geo]'``).
        ValueError: ``src`` has no georeferencing, or the sizes differ.
    """
    rasterio = _rasterio(needed_for="Writing a GeoTIFF")
    path = Path(path)
    if src.geo is None:
        raise ValueError(
            f"write_geotiff_like {path}: source {src.path} has no georeferencing (not a GeoTIFF, or "
            "read without rasterio). Write a plain PNG with write_png instead."
        )
    array = np.asarray(array)
    data = array[None] if array.ndim == 2 else array  # H W -> 1 H W
    if data.ndim != 3 or data.shape[1:] != src.pixels.shape[:2]:
        raise ValueError(
            f"write_geotiff_like {path}: array shape {array.shape} does not match the source "
            f"{src.path} ({src.height}x{src.width}); expected (H, W) or (C, H, W)."
        )
    from affine import Affine  # a rasterio dependency

    crs = rasterio.crs.CRS.from_wkt(src.geo.crs_wkt) if src.geo.crs_wkt else None
    profile = {
        "driver": "GTiff",
        "height": data.shape[1],
        "width": data.shape[2],
        "count": data.shape[0],
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": Affine(*src.geo.transform),
        "compress": "deflate",
    }
    with atomic_write(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data)
    return path


# --------------------------------------------------------------------------------------------
# inputs


def list_inputs(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], recursive: bool = False
) -> list[Path]:
    """Expand files and folders into a sorted, de-duplicated list of image files.

    Folders contribute their ``.png .jpg .jpeg .tif .tiff`` files (any case), non-recursively
    unless ``recursive=True``; hidden files (name starting with ``.``) in folders are skipped.
    A file named explicitly must have one of those suffixes. Duplicates (the same file reached
    twice) are kept once. A folder with no images contributes nothing; the caller decides
    whether an empty result is an error.

    Raises:
        ImageError: a path does not exist, or a named file is not a supported image type.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: dict[Path, Path] = {}
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise ImageError(f"input {p} does not exist. Check the path (relative to {Path.cwd()}).")
        if p.is_dir():
            entries = p.rglob("*") if recursive else p.iterdir()
            for entry in entries:
                if (
                    entry.is_file()
                    and not entry.name.startswith(".")
                    and entry.suffix.lower() in IMAGE_SUFFIXES
                ):
                    found.setdefault(entry.resolve(), entry)
        elif p.suffix.lower() in IMAGE_SUFFIXES:
            found.setdefault(p.resolve(), p)
        else:
            raise ImageError(
                f"input {p} is not a supported image (suffix {p.suffix!r}); icpd reads "
                f"{', '.join(IMAGE_SUFFIXES)} (any case)."
            )
    return sorted(found.values(), key=lambda q: str(q))
