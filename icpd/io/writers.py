"""Writing results: PNGs (with world files for georeferenced scenes) and GeoTIFFs, atomically."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from xml.sax.saxutils import escape

import cv2
import numpy as np

from icpd.io.atomic import atomic_write, write_bytes_atomic
from icpd.io.raster import Raster, import_rasterio


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
    write_bytes_atomic(path, buf.tobytes())
    return path


def _world_file_lines(transform: tuple[float, ...]) -> str:
    """ESRI world file (A, D, B, E, C, F) from an affine whose origin is the top-left pixel corner.

    World files locate the **centre** of the top-left pixel, hence the half-pixel shift.
    """
    a, b, c, d, e, f = transform
    values = (a, d, b, e, c + 0.5 * a + 0.5 * b, f + 0.5 * d + 0.5 * e)
    return "".join(f"{v!r}\n" for v in values)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_palette_png(indices: np.ndarray, palette: np.ndarray) -> bytes:
    """An 8-bit palette PNG (colour type 3) of ``indices`` (H, W) uint8 with ``palette`` (K <= 256, 3)
    uint8 RGB: the pixel values stay the indices (Pillow, GDAL/rasterio, QGIS read them as they are),
    viewers show the palette's colours. Deterministic bytes (zlib level 6, no time stamps)."""
    h, w = indices.shape
    rows = np.zeros((h, w + 1), np.uint8)  # each row: filter type 0 (None), then the indices
    rows[:, 1:] = indices
    header = struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0)  # 8-bit, palette, deflate, adaptive filters, no interlace
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"PLTE", palette.tobytes())
            + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + _png_chunk(b"IEND", b""))


def write_label_png(
    path: str | os.PathLike[str], labels: np.ndarray, like: Raster | None = None, *,
    palette: np.ndarray | None = None,
) -> list[Path]:
    """Write a label map as a single-band uint8 PNG, keeping the source's georeferencing.

    Values are written as they are (0/1 masks stay 0/1). With ``palette`` the PNG is a palette
    PNG: the values are its palette indices, so viewers show each class in its colour while
    Pillow, GDAL/rasterio and QGIS read the class ids unchanged (OpenCV's ``imread`` expands
    palettes to colours). Without it: a grayscale PNG (multiply by 255 first for a visible mask).
    When ``like.geo`` is set, GIS tools (GDAL, QGIS) get the georeferencing from two small
    sidecars that need no rasterio: a world file ``<stem>.pgw`` (transform) and a GDAL
    ``<name>.aux.xml`` holding the CRS.

    Args:
        path: output ``.png``.
        labels: (H, W) bool or integer array with values in [0, 255].
        like: the source scene; its height and width must match ``labels``.
        palette: (K, 3) uint8 RGB, row ``i`` the colour of value ``i``; K <= 256 and above the
            largest label.

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
    if palette is None:
        written = [write_png(path, labels.astype(np.uint8))]
    else:
        palette = np.asarray(palette)
        if palette.ndim != 2 or palette.shape[1] != 3 or palette.dtype != np.uint8 or not 0 < len(palette) <= 256:
            raise ValueError(f"write_label_png {path}: palette must be (K, 3) uint8 with K <= 256, "
                             f"got {palette.shape} {palette.dtype}.")
        if labels.size and int(labels.max()) >= len(palette):
            raise ValueError(f"write_label_png {path}: label {int(labels.max())} has no colour in a palette of "
                             f"{len(palette)}; pass one with at least {int(labels.max()) + 1} rows.")
        if path.suffix.lower() != ".png":
            raise ValueError(f"write_label_png: {path} must end in .png (got suffix {path.suffix!r}).")
        write_bytes_atomic(path, encode_palette_png(labels.astype(np.uint8), palette))
        written = [path]
    if like is not None and like.geo is not None:
        world = path.with_suffix(".pgw")
        write_bytes_atomic(world, _world_file_lines(like.geo.transform).encode())
        written.append(world)
        if like.geo.crs_wkt is not None:
            aux = path.with_name(path.name + ".aux.xml")
            xml = f"<PAMDataset>\n  <SRS>{escape(like.geo.crs_wkt)}</SRS>\n</PAMDataset>\n"
            write_bytes_atomic(aux, xml.encode())
            written.append(aux)
    return written


def write_geotiff_like(
    src: Raster,
    array: np.ndarray,
    path: str | os.PathLike[str],
    *,
    colormap: np.ndarray | None = None,
    class_names: list[str] | tuple[str, ...] | None = None,
) -> Path:
    """Write ``array`` as a GeoTIFF with ``src``'s CRS and transform (needs rasterio).

    A label map can carry its colours and class names, so GIS tools show it as a paletted,
    named layer: ``colormap`` becomes the band's colour table (QGIS, GDAL: "Palette" band) and
    ``class_names`` the band's metadata ``CLASS_<id>=<name>`` (GDAL metadata inside the TIFF,
    ``gdalinfo`` lists it) plus the band description.

    Args:
        src: the scene the array was computed from; must carry ``geo``.
        array: (H, W) or (C, H, W), same H, W as ``src``; any dtype GDAL supports
            (uint8 labels, float32 probabilities, ...).
        path: output ``.tif``; written atomically, deflate-compressed.
        colormap: (K, 3) uint8 RGB, row ``i`` the colour of value ``i``; single-band uint8 only.
        class_names: names of values ``0..len - 1`` (``class_names[0]`` is the background).

    Raises:
        ImportError: rasterio is missing (install with ``pip install 'icpd[geo]'``).
        ValueError: ``src`` has no georeferencing, or the sizes differ.
    """
    rasterio = import_rasterio(needed_for="Writing a GeoTIFF")
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
    if colormap is not None:
        colormap = np.asarray(colormap)
        if data.shape[0] != 1 or data.dtype != np.uint8 or colormap.ndim != 2 or colormap.shape[1] != 3:
            raise ValueError(
                f"write_geotiff_like {path}: a colour map needs a single-band uint8 array and a (K, 3) table, "
                f"got {array.shape} {array.dtype} and {colormap.shape}."
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
        if colormap is not None:
            dst.write_colormap(1, {i: (*(int(v) for v in colormap[i]), 255) for i in range(min(len(colormap), 256))})
        if class_names is not None:
            dst.update_tags(1, **{f"CLASS_{i}": str(n) for i, n in enumerate(class_names)})
            dst.set_band_description(1, "class id: " + ", ".join(f"{i} {n}" for i, n in enumerate(class_names)))
    return path


# --------------------------------------------------------------------------------------------
# inputs
