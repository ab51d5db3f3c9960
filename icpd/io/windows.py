"""GeoTIFF scenes read and written window by window (rasterio), for scenes larger than memory.

:class:`WindowReader` returns any window of a scene as (h, w, 3) uint8 RGB with **the same
conversions, notes and refusals as** :func:`icpd.io.raster.read_image` (through the same
functions: the file's layout, :func:`~icpd.io.raster.plan_bands`, the uint16 stretch table, the
float check), so a window equals the same slice of the whole-scene read, byte for byte, with or
without rasterio for the whole-scene read. The uint16 histogram and the float range are gathered
in one pass over full-width strips when the scene is opened, so a scene is refused before its
first window, never halfway. GDAL's block cache is capped (``GDAL_CACHEMAX``): it counts in the
process's RSS.

:class:`WindowWriter` writes a GeoTIFF window by window (blocks) into a hidden temporary file next to the
target (tiled 256 x 256, deflate, BIGTIFF when needed), keeps the source's CRS, transform and a
nodata value, converts it to a Cloud-Optimized GeoTIFF (GDAL's COG driver: tiles in order plus
overviews; a plain tiled GeoTIFF where the driver is missing) and renames it onto the target
only on :meth:`WindowWriter.commit` (:func:`icpd.io.atomic.atomic_write`).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from icpd.io.atomic import atomic_write
from icpd.io.decoding import apply_palette, geo_of, rasterio_layout, tiff_notes
from icpd.io.raster import (
    GeoInfo,
    ImageError,
    check_dtype,
    float_note,
    import_rasterio,
    parse_bands,
    plan_bands,
    stretch_lut,
)

__all__ = ["BLOCK", "CACHE_MB", "WindowReader", "WindowWriter", "pixel_area"]

BLOCK = 256  # internal tile side of written GeoTIFFs (GDAL's COG default)
CACHE_MB = 64  # GDAL block cache per process, MB: bounded so that RSS does not grow with the scene
STRIP_ROWS = 512  # rows per pass when gathering the uint16 histogram or the float range


def _env():  # -> rasterio.Env
    rasterio = import_rasterio(needed_for="Reading or writing a GeoTIFF by windows")
    return rasterio.Env(GDAL_CACHEMAX=CACHE_MB, GDAL_NUM_THREADS="1")


def pixel_area(geo: GeoInfo | None) -> tuple[float, str] | None:
    """(area of one pixel, unit) for a georeferenced scene, e.g. (0.25, "m²"); None without geo.

    The unit is the CRS's linear unit squared (``metre`` -> ``m²``); ``deg²`` for a geographic
    CRS (not an area on the ground: pixels shrink towards the poles), ``unit²`` without a CRS.
    """
    if geo is None:
        return None
    a, b, _, d, e, _ = geo.transform
    area = abs(a * e - b * d)
    unit = "unit²"
    if geo.crs_wkt:
        rasterio = import_rasterio(needed_for="Reading a CRS")
        crs = rasterio.crs.CRS.from_wkt(geo.crs_wkt)
        if crs.is_geographic:
            unit = "deg²"
        else:
            name = (crs.linear_units or "").lower()
            unit = "m²" if name in ("metre", "meter", "m") else f"{name or 'unit'}²"
    return area, unit


@dataclass(frozen=True)
class _Conversion:
    indexes: tuple[int, int, int]  # 1-based band numbers used as R, G, B (of the palette's colours, if any)
    lut: np.ndarray | None  # uint16 -> uint8 stretch table, or None
    palette: np.ndarray | None  # (entries, 3) uint8 colours of a palette file, or None


class WindowReader:
    """One scene opened for window reads. Use as a context manager.

    Attributes: ``path``, ``height``, ``width``, ``layout`` (:class:`~icpd.io.decoding.Layout`),
    ``geo`` (:class:`GeoInfo` or None), ``nodata`` (the file's nodata value or None), ``notes``
    (conversions, as ``Raster.notes``).
    """

    def __init__(self, path: str | os.PathLike[str], bands: Sequence[int] | None = None,
                 data: bytes | None = None) -> None:
        """``data``: the file's bytes, already in memory (a request body, read through GDAL's /vsimem/:
        nothing touches the file system); ``path`` then only names it in messages."""
        bands = parse_bands(bands)  # the one band parser: refused before the file is opened
        rasterio = import_rasterio(needed_for="Reading a GeoTIFF by windows")
        self.path = Path(path)
        self._memory = None if data is None else rasterio.MemoryFile(data)
        if data is None and not self.path.is_file():
            raise ImageError(f"image {self.path} does not exist or is not a file. Check the path.")
        self._env = _env()
        self._env.__enter__()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                self._ds = rasterio.open(self.path) if self._memory is None else self._memory.open()
        except rasterio.errors.RasterioError as exc:
            self._env.__exit__(None, None, None)
            if self._memory is not None:
                self._memory.close()
            raise ImageError(f"image {self.path} could not be opened as a GeoTIFF ({exc}). "
                             "Re-export it.") from exc
        try:
            self.layout, palette = rasterio_layout(rasterio, self._ds)
            self.height, self.width = self.layout.height, self.layout.width
            self._conv, self.notes = self._plan(bands, palette)
        except BaseException:
            self.close()
            raise
        self.geo = geo_of(self._ds)
        self.nodata = None if self._ds.nodata is None else float(self._ds.nodata)

    def _plan(self, bands: Sequence[int] | None,
              palette: np.ndarray | None) -> tuple[_Conversion, tuple[str, ...]]:
        """The whole-scene read's conversions (same functions, same order of notes), checked up front."""
        notes = tiff_notes(self.layout)
        indexes, band_notes = plan_bands(self.layout, self.path, bands)
        notes += band_notes
        conv = _Conversion(indexes, None, palette)
        dtype = np.dtype(np.uint8) if palette is not None else self.layout.dtype
        check_dtype(dtype, self.layout, self.path)
        if dtype == np.uint16:
            hist = np.zeros(65536, dtype=np.int64)
            for y, h in iter_strips(self.height, STRIP_ROWS):
                hist += np.bincount(self._raw(y, 0, h, self.width, conv).ravel(), minlength=65536)
            conv = _Conversion(indexes, stretch_lut(hist, notes), None)
        elif np.issubdtype(dtype, np.floating):
            lo, hi, nonfinite = np.inf, -np.inf, 0
            for y, h in iter_strips(self.height, STRIP_ROWS):
                raw = self._raw(y, 0, h, self.width, conv)
                finite = np.isfinite(raw)
                nonfinite += int(raw.size - np.count_nonzero(finite))
                if finite.any():
                    lo, hi = min(lo, float(raw[finite].min())), max(hi, float(raw[finite].max()))
            notes.append(float_note(dtype, lo, hi, nonfinite, self.layout, self.path))
        return conv, tuple(notes)

    def _read(self, indexes: int | list[int], y: int, x: int, h: int, w: int) -> np.ndarray:
        """``self._ds.read`` of rows ``y..y+h``, columns ``x..x+w``: (h, w) for one band index, else
        (C, h, w). A block GDAL cannot decode (a damaged or cut-off file) is an :class:`ImageError`
        naming the file, the window and GDAL's reason; rasterio's own text only says "Read failed.
        See previous exception for details." (the reason is in its ``__cause__`` chain)."""
        import rasterio
        from rasterio.windows import Window

        try:
            return self._ds.read(indexes, window=Window(x, y, w, h))
        except rasterio.errors.RasterioIOError as exc:
            raise ImageError(f"image {self.path}: reading rows {y}..{y + h - 1}, columns {x}..{x + w - 1} "
                             f"failed ({gdal_reason(exc)}); the file looks corrupt or truncated: export or "
                             "copy it again") from exc

    def _raw(self, y: int, x: int, h: int, w: int, conv: _Conversion) -> np.ndarray:
        """(h, w, 3) of the used bands in the file's pixel type (palette colours looked up)."""
        if conv.palette is not None:
            colours = apply_palette(self._read(1, y, x, h, w), conv.palette)  # (h, w, 3)
            return colours[:, :, [i - 1 for i in conv.indexes]]
        return np.moveaxis(self._read(list(conv.indexes), y, x, h, w), 0, -1)  # C h w -> h w C

    def read(self, y: int, x: int, h: int, w: int) -> np.ndarray:
        """Rows ``y..y+h``, columns ``x..x+w`` as (h, w, 3) uint8 RGB (converted as read_image)."""
        if y < 0 or x < 0 or h < 1 or w < 1 or y + h > self.height or x + w > self.width:
            raise ValueError(f"WindowReader.read: window y={y} x={x} h={h} w={w} outside "
                             f"{self.height}x{self.width}.")
        raw = self._raw(y, x, h, w, self._conv)
        if self._conv.lut is not None:
            return np.ascontiguousarray(self._conv.lut[raw])
        if raw.dtype != np.uint8:  # float in [0, 1], checked over the whole scene when opened
            raw = np.round(raw.astype(np.float32) * 255.0).astype(np.uint8)
        return np.ascontiguousarray(raw)

    def nodata_mask(self, y: int, h: int, x: int = 0, w: int | None = None) -> np.ndarray | None:
        """(h, w) bool: pixels of rows ``y..y+h``, columns ``x..x+w`` (``w`` None: to the right
        edge) whose three used bands all equal nodata; None when the file declares no nodata value."""
        if self.nodata is None:
            return None
        # file bands, not colours
        used = [1] if self._conv.palette is not None else sorted(set(self._conv.indexes))
        raw = np.moveaxis(self._read(used, y, x, h, self.width - x if w is None else w), 0, -1)
        return np.all(raw == np.asarray(self.nodata, dtype=raw.dtype), axis=-1)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._ds.close()
        if self._memory is not None:
            self._memory.close()
        self._env.__exit__(None, None, None)

    def __enter__(self) -> WindowReader:  # noqa: PYI034 - final classes
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def gdal_reason(exc: BaseException) -> str:
    """GDAL's words for a failed read, from the ``__cause__`` chain rasterio attaches (outermost
    first; a message already inside an earlier one is left out), else ``str(exc)``.

    ``"torn.tif, band 1: IReadBlock failed at X offset 1, Y offset 0: TIFFReadEncodedTile() failed.;
    ZIPDecode:Decoding error at scanline 256, incorrect header check"``.
    """
    reasons: list[str] = []
    cause = exc.__cause__
    while cause is not None and len(reasons) < 8:  # a bounded walk: chains are short, never cyclic in practice
        text = str(cause).strip()
        if text and not any(text in r for r in reasons):
            reasons.append(text)
        cause = cause.__cause__
    return "; ".join(reasons) or str(exc)


class WindowWriter:
    """A (count, H, W) GeoTIFF written window by window; appears at ``path`` only on :meth:`commit`.

    Args:
        path: the target ``.tif``.
        height, width, count, dtype: raster size and pixel type (e.g. 1 uint8 band of labels).
        geo: CRS and transform to keep (None: a plain, non-georeferenced TIFF).
        nodata: the nodata value to declare, or None.
        colormap: {value: (r, g, b)} for a single-band uint8 raster (class colours), or None.
        descriptions: one text per band (class names), or None.
        resampling: overview resampling, ``"nearest"`` for labels, ``"average"`` for pictures.
    """

    def __init__(self, path: str | os.PathLike[str], height: int, width: int, count: int, dtype: str,
                 geo: GeoInfo | None = None, nodata: float | None = None,
                 colormap: dict[int, tuple[int, int, int]] | None = None,
                 descriptions: Sequence[str] | None = None, resampling: str = "nearest") -> None:
        rasterio = import_rasterio(needed_for="Writing a GeoTIFF")
        from affine import Affine  # a rasterio dependency

        self.path, self.height, self.width, self.count = Path(path), height, width, count
        self._resampling = resampling
        self._tags = {"TIFFTAG_IMAGEDESCRIPTION": ""}
        self._atomic = atomic_write(self.path)
        self._env = _env()
        self._env.__enter__()
        self._tmp = self._atomic.__enter__()
        profile = {
            "driver": "GTiff", "height": height, "width": width, "count": count, "dtype": dtype,
            "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate",
            "BIGTIFF": "IF_SAFER", "nodata": nodata,
        }
        if geo is not None:
            profile["crs"] = rasterio.crs.CRS.from_wkt(geo.crs_wkt) if geo.crs_wkt else None
            profile["transform"] = Affine(*geo.transform)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                self._ds = rasterio.open(self._tmp, "w", **profile)
            if colormap is not None:
                self._ds.write_colormap(1, colormap)
            for i, text in enumerate(descriptions or (), start=1):
                self._ds.set_band_description(i, text)
        except BaseException:
            self.abort()
            raise

    def write(self, row: int, data: np.ndarray, col: int = 0) -> None:
        """Write rows ``row..row+h``, columns ``col..col+w`` of every band: ``data`` (count, h, w) or
        (h, w) for one band. Windows on the :data:`BLOCK` grid are written as whole blocks (no
        read-back of a block compressed already)."""
        from rasterio.windows import Window

        data = data[None] if data.ndim == 2 else data
        if (data.ndim != 3 or data.shape[0] != self.count or row < 0 or col < 0
                or row + data.shape[1] > self.height or col + data.shape[2] > self.width):
            raise ValueError(f"WindowWriter.write {self.path}: block {data.shape} at row {row}, column {col} "
                             f"does not fit ({self.count}, {self.height}, {self.width}).")
        self._ds.write(data, window=Window(col, row, data.shape[2], data.shape[1]))

    def commit(self) -> Path:
        """Close, convert to a COG when GDAL can, and move onto ``path`` (atomic)."""
        rasterio = import_rasterio(needed_for="Writing a GeoTIFF")
        try:
            self._ds.close()
            if _has_cog(rasterio):
                cog = self._tmp.with_name(self._tmp.name + ".cog")
                try:
                    from rasterio.shutil import copy as rio_copy

                    rio_copy(self._tmp, cog, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=BLOCK,
                                         RESAMPLING=self._resampling.upper(), BIGTIFF="IF_SAFER")
                    os.replace(cog, self._tmp)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        cog.unlink()
        except BaseException as exc:
            self._close(exc)
            raise
        self._close(None)
        return self.path

    def abort(self) -> None:
        """Drop the temporary file; ``path`` is left as it was."""
        with contextlib.suppress(Exception):
            self._ds.close()
        self._close(RuntimeError("aborted"))

    def _close(self, exc: BaseException | None) -> None:
        try:
            if exc is None:
                self._atomic.__exit__(None, None, None)
            else:
                with contextlib.suppress(BaseException):
                    self._atomic.__exit__(type(exc), exc, exc.__traceback__)
        finally:
            self._env.__exit__(None, None, None)

    def __enter__(self) -> WindowWriter:  # noqa: PYI034 - final classes
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            self.commit()
        else:
            self.abort()


def _has_cog(rasterio) -> bool:  # rasterio: the module
    with rasterio.Env() as env:
        return "COG" in env.drivers()


def iter_strips(height: int, rows: int) -> Iterator[tuple[int, int]]:
    """(first row, row count) of consecutive strips of ``rows`` rows covering ``height``."""
    for y in range(0, height, rows):
        yield y, min(rows, height - y)
