"""TIFF decoding, the same with or without rasterio.

With rasterio (``pip install 'icpd[geo]'``): pixels plus georeferencing. Without it: tifffile (a
runtime dependency: pure Python, every band count, pixel type, tiled or striped, planar or
interleaved, uncompressed, DEFLATE or PackBits); compressions tifffile cannot decode on its own
(LZW, JPEG, ZSTD, ...) fall back to OpenCV only where OpenCV is exact (1 band, or 3 interleaved RGB
bands, lossless compression) and are refused otherwise with the extra to install. OpenCV is not
used for other TIFFs because it silently keeps one band of a 4-band uint16 file, or premultiplies a
4th band. One layout rule (:func:`_tiff_layout`) and one set of notes (:func:`tiff_notes`) serve
both readers and the window reader (:mod:`icpd.io.windows`).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np

from icpd.io.layout import (
    GEO_EXTRA_HINT,
    GEO_TAGS,
    LOSSY,
    MINISWHITE,
    NO_GEO_NOTE,
    Decoded,
    GeoInfo,
    ImageError,
    Layout,
    as_hwc,
    cv2_decode,
    import_rasterio,
    quiet_tifffile,
)


def _rasterio_tiff(rasterio: ModuleType, path: Path | io.BytesIO, colours: bool
                   ) -> tuple[np.ndarray, Layout, GeoInfo | None, list[str]]:
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
    arr = as_hwc(arr.astype(np.uint8) if arr.dtype == np.bool_ else arr)  # bilevel: 0/1, as GDAL reads it
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


def decode_tiff(data: bytes, path: Path, what: str, colours: bool, in_memory: bool = False) -> Decoded | str:
    """A TIFF decoded the same way with or without rasterio; why not, when no TIFF reader can parse it.
    ``in_memory``: rasterio reads ``data`` (GDAL's /vsimem/), not ``path``."""
    rasterio = import_rasterio()
    if rasterio is not None:
        with contextlib.suppress(rasterio.errors.RasterioError):
            arr, layout, geo, notes = _rasterio_tiff(rasterio, io.BytesIO(data) if in_memory else path, colours)
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
