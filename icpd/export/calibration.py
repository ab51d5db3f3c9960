"""What INT8 conversion calibrates and measures on: the user's own tiles (``calibration=DIR``)
or, as a fallback said in a note, a few built-in synthetic aerial tiles; and the encoder inputs
made from them by the model dir's own ``preprocess.onnx``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from icpd.errors import ParamMessage, arg

__all__ = ["DEFAULT_CALIBRATION_TILES", "MAX_CALIBRATION_IMAGES", "SYNTHETIC_NOTE", "CalibrationReader",
           "Int8ConversionError", "calibration_images", "encoder_feeds"]

DEFAULT_CALIBRATION_TILES = 8  # built-in synthetic tiles when no --calibration folder is given
MAX_CALIBRATION_IMAGES = 32  # a folder's first images (sorted): ranges settle long before this
SYNTHETIC_NOTE = ("no calibration folder: sensitivity and speed were measured on built-in synthetic tiles; "
                  "give one with some of your own tiles (`icpd export --calibration DIR`) to measure them "
                  "on your data")


class Int8ConversionError(ParamMessage, RuntimeError):
    """The INT8 conversion failed (wrong source, bad calibration images, quantizer error)."""



def calibration_images(folder: str | os.PathLike[str] | None, size: int,
                       seed: int = 0) -> tuple[list[np.ndarray], dict[str, Any]]:
    """(H, W, 3) uint8 RGB images to calibrate on, and how they were chosen (for model.json).

    ``folder``: its images (sorted, the first :data:`MAX_CALIBRATION_IMAGES`); None: the built-in
    set, :data:`DEFAULT_CALIBRATION_TILES` synthetic aerial tiles of ``size`` px from ``seed``.

    Raises:
        Int8ConversionError: the folder does not exist, holds no image, or an image is unreadable.
    """
    if folder is None:
        from icpd.data.synthetic import render_tile

        rng = np.random.default_rng(seed)
        tiles = [render_tile(rng, size, "isaid5i", [1 + (3 * i) % 15], [1 + (3 * i + 7) % 15])[0]
                 for i in range(DEFAULT_CALIBRATION_TILES)]
        return tiles, {"source": "built-in synthetic tiles", "images": len(tiles), "seed": seed, "size": size,
                       "note": SYNTHETIC_NOTE}
    from icpd.io.inputs import list_inputs
    from icpd.io.raster import ImageError, read_image

    path = Path(folder)
    if not path.is_dir():
        raise Int8ConversionError(f"{arg('calibration', path)}: not a folder; give a folder of PNG/JPEG/TIFF "
                                  "images")
    try:
        files = list_inputs(path)[:MAX_CALIBRATION_IMAGES]
        if not files:
            raise Int8ConversionError(f"{arg('calibration', path)}: no .png/.jpg/.tif images in it")
        images = [read_image(f).pixels for f in files]
    except ImageError as err:
        raise Int8ConversionError(f"{arg('calibration', path)}: {err}") from err
    return images, {"source": str(path.resolve()), "images": len(images), "files": [f.name for f in files]}


def encoder_feeds(preprocess: Path, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The encoder's inputs for ``images``: ``{"images": (1, 3, S, S)}`` from ``preprocess.onnx``."""
    from icpd.export.ort_session import ort_session

    pre = ort_session(preprocess, "cpu")
    return [{"images": pre.run(["images"], {"pixels": img[None]})[0]} for img in images]


class CalibrationReader:
    """onnxruntime.quantization's CalibrationDataReader over encoder feeds (one per call)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)
