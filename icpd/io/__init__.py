"""Decoding and atomic writing of images, masks and GeoTIFFs: the bottom I/O layer.

Every image that reaches the model is an (H, W, 3) uint8 RGB array; :mod:`icpd.io.decoding`
reads each format to its bands in file order (TIFFs the same with or without rasterio) and
:mod:`icpd.io.raster` says how those bands become RGB. Everything written goes through
:func:`icpd.io.atomic.atomic_write` (files) or :func:`icpd.io.atomic.atomic_dir` (folders).
"""

from icpd.io.atomic import (
    OutputPathError,
    atomic_dir,
    atomic_write,
    describe_os_error,
    ensure_writable,
    write_bytes_atomic,
)
from icpd.io.inputs import list_inputs
from icpd.io.labels import resize_label
from icpd.io.masks import read_class_mask, read_mask
from icpd.io.raster import (
    GEO_EXTRA_HINT,
    IMAGE_SUFFIXES,
    GeoInfo,
    ImageError,
    Raster,
    parse_bands,
    read_image,
)
from icpd.io.writers import write_geotiff_like, write_label_png, write_png

__all__ = [
    "GEO_EXTRA_HINT",
    "IMAGE_SUFFIXES",
    "GeoInfo",
    "ImageError",
    "OutputPathError",
    "Raster",
    "atomic_dir",
    "atomic_write",
    "describe_os_error",
    "ensure_writable",
    "list_inputs",
    "parse_bands",
    "read_class_mask",
    "read_image",
    "read_mask",
    "resize_label",
    "write_bytes_atomic",
    "write_geotiff_like",
    "write_label_png",
    "write_png",
]
