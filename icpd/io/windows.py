"""GeoTIFF scenes read and written window by window (rasterio), for scenes larger than memory.

:class:`WindowReader` returns any window of a scene as (h, w, 3) uint8 RGB with **the same
conversions as** :func:`icpd.io.raster.read_image` (bands 1-based in file order, grayscale
replicated, 4+ bands refused without ``bands``, uint16 stretched by the scene's joint 2nd..98th
percentile, float in [0, 1] scaled), so a window equals the same slice of the whole-scene read,
byte for byte. The uint16 histogram is gathered in one pass over full-width strips when the
scene is opened. GDAL's block cache is capped (``GDAL_CACHEMAX``): it counts in the process's RSS.

:class:`WindowWriter` writes a GeoTIFF strip by strip into a hidden temporary file next to the
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
from icpd.io.raster import (
    STRETCH_PERCENTILES,
    GeoInfo,
    ImageError,
    _select_bands,
    _to_uint8,
    import_rasterio,
    ordinal,
)

__all__ = ["BLOCK", "CACHE_MB", "WindowReader", "WindowWriter", "pixel_area"]

BLOCK = 256  # internal tile side of written GeoTIFFs (GDAL's COG default)
CACHE_MB = 64  # GDAL block cache per process, MB: bounded so that RSS does not grow with the scene
STRIP_ROWS = 512  # rows per pass when gathering the uint16 histogram


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
    indexes: tuple[int, int, int]  # 1-based band numbers used as R, G, B
    lut: np.ndarray | None  # uint16 -> uint8 stretch table, or None


class WindowReader:
    """One scene opened for window reads. Use as a context manager.

    Attributes: ``path``, ``height``, ``width``, ``geo`` (:class:`GeoInfo` or None), ``nodata``
    (the file's nodata value or None), ``notes`` (conversions, as ``Raster.notes``).
    """

    def __init__(self, path: str | os.PathLike[str], bands: Sequence[int] | None = None) -> None:
        rasterio = import_rasterio(needed_for="Reading a GeoTIFF by windows")
        self.path = Path(path)
        if not self.path.is_file():
            raise ImageError(f"image {self.path} does not exist or is not a file. Check the path.")
        self._env = _env()
        self._env.__enter__()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                self._ds = rasterio.open(self.path)
        except rasterio.errors.RasterioError as exc:
            self._env.__exit__(None, None, None)
            raise ImageError(f"image {self.path} could not be opened as a GeoTIFF ({exc}). Re-export it.") from exc
        try:
            self._conv, self.notes = self._plan(bands)
        except BaseException:
            self.close()
            raise
        ds = self._ds
        self.height, self.width = int(ds.height), int(ds.width)
        transform = tuple(float(v) for v in tuple(ds.transform)[:6])
        self.geo = None
        if ds.crs is not None or transform != (1.0, 0.0, 0.0, 0.0, 1.0, 0.0):
            self.geo = GeoInfo(crs_wkt=ds.crs.to_wkt() if ds.crs is not None else None, transform=transform)
        self.nodata = None if ds.nodata is None else float(ds.nodata)

    def _plan(self, bands: Sequence[int] | None) -> tuple[_Conversion, tuple[str, ...]]:
        ds, notes = self._ds, []
        n, dtype = int(ds.count), np.dtype(ds.dtypes[0])
        # the in-memory rules, applied to a 1x1 stand-in whose values are the band positions
        probe = _select_bands(np.arange(n, dtype=np.int64).reshape(1, 1, n), self.path,
                              tuple(bands) if bands is not None else None, notes)
        indexes = tuple(int(i) + 1 for i in probe[0, 0])
        lut = None
        if dtype == np.uint16:
            lut = self._stretch_lut(indexes, notes)
        elif dtype != np.uint8 and not np.issubdtype(dtype, np.floating):
            _to_uint8(np.zeros((1, 1, 3), dtype), self.path, notes)  # raises the in-memory refusal
        if dtype != np.uint8 and np.issubdtype(dtype, np.floating):
            notes.append(f"{dtype} in [0, 1]: scaled by 255 and rounded to uint8")
        return _Conversion(indexes, lut), tuple(notes)

    def _stretch_lut(self, indexes: tuple[int, ...], notes: list[str]) -> np.ndarray:
        """The stretch of ``raster._stretch_uint16`` from a histogram gathered strip by strip."""
        hist = np.zeros(65536, dtype=np.int64)
        lo_v, hi_v = 65535, 0
        for y in range(0, self._ds.height, STRIP_ROWS):
            raw = self._raw(y, 0, min(STRIP_ROWS, self._ds.height - y), self._ds.width, indexes)
            hist += np.bincount(raw.ravel(), minlength=65536)
            lo_v, hi_v = min(lo_v, int(raw.min())), max(hi_v, int(raw.max()))
        cdf = np.cumsum(hist)
        lo_q, hi_q = STRETCH_PERCENTILES
        lo = int(np.searchsorted(cdf, cdf[-1] * lo_q / 100.0))
        hi = int(np.searchsorted(cdf, cdf[-1] * hi_q / 100.0))
        if hi <= lo:
            lo, hi = lo_v, hi_v
        if hi <= lo:
            notes.append(f"uint16 constant image ({lo}): mapped by /257")
            return np.full(65536, round(lo / 257), dtype=np.uint8)
        lut = np.clip((np.arange(65536, dtype=np.float64) - lo) * (255.0 / (hi - lo)), 0, 255)
        notes.append(f"uint16: stretched [{lo}, {hi}] ({ordinal(lo_q)}..{ordinal(hi_q)} percentile over all bands) "
                     "to [0, 255], clipped")
        return np.round(lut).astype(np.uint8)

    def _raw(self, y: int, x: int, h: int, w: int, indexes: Sequence[int]) -> np.ndarray:
        from rasterio.windows import Window

        data = self._ds.read(indexes=list(indexes), window=Window(x, y, w, h))  # (3, h, w)
        return np.moveaxis(data, 0, -1)  # C h w -> h w C

    def read(self, y: int, x: int, h: int, w: int) -> np.ndarray:
        """Rows ``y..y+h``, columns ``x..x+w`` as (h, w, 3) uint8 RGB (converted as read_image)."""
        if y < 0 or x < 0 or h < 1 or w < 1 or y + h > self.height or x + w > self.width:
            raise ValueError(f"WindowReader.read: window y={y} x={x} h={h} w={w} outside {self.height}x{self.width}.")
        raw = self._raw(y, x, h, w, self._conv.indexes)
        if self._conv.lut is not None:
            return np.ascontiguousarray(self._conv.lut[raw])
        return np.ascontiguousarray(_to_uint8(raw, self.path, []))

    def nodata_mask(self, y: int, h: int) -> np.ndarray | None:
        """(h, W) bool: pixels of rows ``y..y+h`` whose three used bands all equal nodata; None
        when the file declares no nodata value."""
        if self.nodata is None:
            return None
        raw = self._raw(y, 0, h, self.width, self._conv.indexes)
        return np.all(raw == np.asarray(self.nodata, dtype=raw.dtype), axis=-1)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._ds.close()
        self._env.__exit__(None, None, None)

    def __enter__(self) -> WindowReader:  # noqa: PYI034 - final classes
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WindowWriter:
    """A (count, H, W) GeoTIFF written strip by strip; appears at ``path`` only on :meth:`commit`.

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
        self._rows = 0

    def write(self, row: int, data: np.ndarray) -> None:
        """Write rows ``row..row+h`` of every band: ``data`` (count, h, W) or (h, W) for one band."""
        from rasterio.windows import Window

        data = data[None] if data.ndim == 2 else data
        if data.shape[0] != self.count or data.shape[2] != self.width or row + data.shape[1] > self.height:
            raise ValueError(f"WindowWriter.write {self.path}: block {data.shape} at row {row} does not fit "
                             f"({self.count}, {self.height}, {self.width}).")
        self._ds.write(data, window=Window(0, row, self.width, data.shape[1]))
        self._rows += data.shape[1]

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
