"""Cut scenes of any size into model-input tiles, and the weights that blend them back.

Plan: tile origins sit on a regular grid with stride ``tile - overlap``; the last row and
column are shifted so they end exactly at the image border, so every tile lies fully inside
an image that is at least tile-sized (no padding, no wasted pixels). Only an image smaller
than the tile in a dimension is padded, by **reflection** (``np.pad(mode="reflect")``): zero
padding would add a black band the model may read as shadow or water, while a mirror image
keeps local statistics. Predictions on the padding are cropped away when blended
(:class:`icpd.runtime.scene.SceneBlend`, the one blender).
A scene smaller than one tile is therefore one padded tile, never stretched to the model input
(``icpd infer`` uses this one rule for every scene size: no aspect distortion, and no jump in
the results at the tile size).

Blend: each tile's probabilities are weighted by a separable raised-cosine window that ramps
from ~0 to 1 over ``overlap`` pixels on each side that has a neighbouring tile (sides on the
image border keep weight 1, so pixels seen by a single tile are returned exactly). Two tiles
overlapping by exactly ``overlap`` get weights summing to 1 across the seam, so seams vanish.
With ``overlap = 0`` every weight is 1 and blending is plain placement. The weights are
:func:`tile_window`; the blending itself is :mod:`icpd.runtime.scene`'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from icpd.errors import ParamError, arg
from icpd.runtime.validation import check_threshold

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

__all__ = ["MIN_TILE_ANY", "SceneOptions", "Tile", "min_tile", "pad_tile", "plan_tiles", "small_scene_notes",
           "tile_window"]

# A tile is resized to the model input S; below S / MIN_TILE_DIVISOR it is upsampled more than
# this factor, so the model sees interpolation blur instead of texture, and the tile count grows
# as 1 / tile**2 (``--tile 1`` on a 256 px scene is 65,536 predictor inputs).
MIN_TILE_DIVISOR = 4


@dataclass(frozen=True)
class Tile:
    """One model-input window on a scene.

    The tile covers image rows ``y : y + h`` and columns ``x : x + w``; the model sees a
    ``size x size`` patch, which equals that region unless the image is smaller than
    ``size`` in a dimension (then ``h`` or ``w`` < ``size`` and the rest is padding).
    """

    y: int  # top row in the image
    x: int  # left column in the image
    h: int  # rows of the image inside the tile (== size unless the image is shorter)
    w: int  # columns of the image inside the tile (== size unless the image is narrower)
    size: int  # side of the square model input, pixels

    @property
    def slices(self) -> tuple[slice, slice]:
        """Image-space ``(rows, cols)`` slices of the region this tile covers."""
        return slice(self.y, self.y + self.h), slice(self.x, self.x + self.w)


def _origins(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)  # last tile ends exactly at the border
    return starts


def plan_tiles(height: int, width: int, tile: int, overlap: int = 0) -> list[Tile]:
    """Tiles covering an ``height x width`` image, in row-major order.

    Args:
        height, width: image size in pixels (>= 1).
        tile: side of the square model input in pixels (>= 1).
        overlap: pixels shared by neighbouring tiles, ``0 <= overlap < tile``; the grid stride
            is ``tile - overlap`` (the last row/column may overlap more, to end at the border).

    Returns:
        ``ceil((H - overlap) / (tile - overlap))`` rows times the same for columns (1 for a
        dimension not larger than ``tile``) of :class:`Tile`.
    """
    for name, value in (("height", height), ("width", width), ("tile", tile), ("overlap", overlap)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"plan_tiles: {name} must be an int, got {value!r} ({type(value).__name__}).")
    if height < 1 or width < 1:
        raise ValueError(f"plan_tiles: image size must be positive, got {height}x{width} (HxW).")
    if tile < 1:
        raise ValueError(f"plan_tiles: tile must be >= 1 pixel, got {tile}.")
    if not 0 <= overlap < tile:
        raise ValueError(
            f"plan_tiles: overlap={overlap} must satisfy 0 <= overlap < tile={tile} (the stride "
            f"tile - overlap must be positive). Use e.g. overlap={tile // 4}."
        )
    stride = tile - overlap
    rows, cols = _origins(height, tile, stride), _origins(width, tile, stride)
    h, w = min(tile, height), min(tile, width)
    return [Tile(y=int(y), x=int(x), h=h, w=w, size=tile) for y in rows for x in cols]


def pad_tile(patch: np.ndarray, size: int) -> np.ndarray:
    """(h, w[, C]) with h, w <= size -> (size, size[, C]), the missing part filled by reflection
    (the one padding rule of every path, in memory or windowed)."""
    h, w = patch.shape[:2]
    if h == size and w == size:
        return patch
    pad = [(0, size - h), (0, size - w)] + [(0, 0)] * (patch.ndim - 2)
    return np.pad(patch, pad, mode="reflect")


def min_tile(model_size: int) -> int:
    """The smallest ``--tile`` that makes sense for a model of input ``model_size`` (see
    MIN_TILE_DIVISOR for why)."""
    return max(1, model_size // MIN_TILE_DIVISOR)


MIN_TILE_ANY = 32  # min_tile() of the smallest preset (tiny, 128 px input)


def small_scene_notes(height: int, width: int, tile: int, model_size: int) -> list[str]:
    """A note for a scene with a side below :func:`min_tile` (a quarter of the model input, where
    tiles and supports are refused as blur): it is segmented, padded by reflection to one tile, but
    the user should know how little the network saw (``icpd infer``'s and ``icpd serve``'s notes)."""
    low = min_tile(model_size)
    if min(height, width) >= low:
        return []
    return [(f"{height}x{width} px (HxW): a side below {low} px (a quarter of the model input, "
             f"{model_size} px); padded by reflection to the {tile} px tile, never stretched: so few pixels "
             "give unreliable masks")]


@dataclass(frozen=True)
class SceneOptions:
    """How a scene is cut, batched and labelled: what every application's scene pipeline takes
    (``icpd infer``'s :class:`~icpd.apps.infer.options.InferOptions` adds its outputs; ``icpd stream``
    uses these as they are). Checked once, when made (:class:`~icpd.errors.ParamError`, a ValueError,
    naming the field: ``tile=0`` from Python, ``--tile 0`` on the command line)."""

    threshold: float = 0.5  # foreground probability a class needs to win a pixel (>=)
    tile: int | None = None  # tile side in scene pixels; None: the model input S (see for_model)
    overlap: int = 32  # pixels shared by neighbouring tiles (blended with a raised cosine)
    batch: int = 8  # tiles per predictor call

    def __post_init__(self) -> None:
        check_threshold(self.threshold)  # the Predictor's rule and words
        if self.tile is not None and self.tile < 1:
            raise ParamError(f"{arg('tile', self.tile)}: must be >= 1 pixel (default: the model input size)")
        if self.overlap < 0 or (self.tile is not None and self.overlap >= self.tile):
            bound = f"tile ({self.tile})" if self.tile is not None else "tile"
            hint = f"; e.g. {arg('overlap', self.tile // 4)}" if self.tile is not None else ""
            if self.tile is not None and self.tile < MIN_TILE_ANY:
                raise ParamError(
                    f"{arg('tile', self.tile)}: too small for any model: tiles are resized to the model "
                    f"input, so one below a quarter of it (>= {MIN_TILE_ANY} px for every preset) is "
                    f"upsampled blur, and the tile count grows as 1/tile²; omit {arg('tile')} to use the "
                    "model input size")
            raise ParamError(f"{arg('overlap', self.overlap)}: must satisfy 0 <= overlap < {bound}{hint}")
        if self.batch < 1:
            raise ParamError(f"{arg('batch', self.batch)}: must be >= 1")

    def for_model(self, model_size: int) -> Self:  # InferOptions stays InferOptions
        """These options with ``tile`` resolved (None -> the model input ``model_size``), so the
        overlap is checked against the actual tile once, here. ``self`` when the tile is set.

        Raises:
            ParamError: a tile below :func:`min_tile` (the message says why).
        """
        low = min_tile(model_size)
        if self.tile is not None and self.tile < low:
            raise ParamError(
                f"{arg('tile', self.tile)}: the smallest useful tile for this model is {low} px: each tile "
                f"is resized to the model input ({model_size} px), so a smaller one is upsampled more than "
                f"{model_size // low}x (blur, not detail) and the tile count grows as 1/tile²; "
                f"omit {arg('tile')} for {model_size}")
        return self if self.tile is not None else replace(self, tile=model_size)


def _ramp(size: int, overlap: int, ramp_start: bool, ramp_end: bool) -> np.ndarray:
    """(size,) float32 weights: raised cosine over ``overlap`` px at the flagged ends, else 1.

    ``r[i] = sin^2(pi (i + 0.5) / (2 overlap))`` so that ``r[i] + r[overlap - 1 - i] == 1``:
    two tiles overlapping by exactly ``overlap`` sum to weight 1 across the seam. Never 0.
    """
    w = np.ones(size, dtype=np.float64)
    n = min(overlap, size)
    if n > 0:
        r = np.sin(math.pi * (np.arange(n) + 0.5) / (2 * overlap)) ** 2
        if ramp_start:
            w[:n] = np.minimum(w[:n], r)
        if ramp_end:
            w[size - n :] = np.minimum(w[size - n :], r[::-1])
    return w.astype(np.float32)


def tile_window(tile: Tile, height: int, width: int, overlap: int) -> np.ndarray:
    """(tile.h, tile.w) float32 blend weights of ``tile`` in an ``height x width`` scene: the
    separable raised cosine of :func:`_ramp` on the sides that have a neighbouring tile (the
    blend weight rule of :class:`~icpd.runtime.scene.SceneBlend`)."""
    wy = _ramp(tile.size, overlap, tile.y > 0, tile.y + tile.h < height)[: tile.h]
    wx = _ramp(tile.size, overlap, tile.x > 0, tile.x + tile.w < width)[: tile.w]
    return wy[:, None] * wx[None, :]  # (h, w)
