"""Cut scenes of any size into model-input tiles, and blend tile predictions back.

Plan: tile origins sit on a regular grid with stride ``tile - overlap``; the last row and
column are shifted so they end exactly at the image border, so every tile lies fully inside
an image that is at least tile-sized (no padding, no wasted pixels). Only an image smaller
than the tile in a dimension is padded, by **reflection** (``np.pad(mode="reflect")``): zero
padding would add a black band the model may read as shadow or water, while a mirror image
keeps local statistics. Predictions on the padding are cropped away by :class:`Blender`.
A scene smaller than one tile is therefore one padded tile, never stretched to the model input
(``icpd infer`` uses this one rule for every scene size: no aspect distortion, and no jump in
the results at the tile size).

Blend: each tile's probabilities are weighted by a separable raised-cosine window that ramps
from ~0 to 1 over ``overlap`` pixels on each side that has a neighbouring tile (sides on the
image border keep weight 1, so pixels seen by a single tile are returned exactly). Two tiles
overlapping by exactly ``overlap`` get weights summing to 1 across the seam, so seams vanish.
With ``overlap = 0`` every weight is 1 and blending is plain placement.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from icpd.runtime.validation import check_threshold

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

__all__ = ["MIN_TILE_ANY", "Blender", "SceneOptions", "Tile", "extract_tiles", "iter_tile_batches", "min_tile",
           "pad_tile", "plan_tiles", "tile_window"]

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


def _tile_size(tiles: Sequence[Tile]) -> int:
    sizes = {t.size for t in tiles}
    if len(sizes) != 1:
        raise ValueError(f"tiles must all have the same size to be batched, got sizes {sorted(sizes)}.")
    return sizes.pop()


def extract_tiles(image: np.ndarray, tiles: Sequence[Tile]) -> np.ndarray:
    """Copy the tiles out of ``image`` into one batch.

    Args:
        image: (H, W, C) or (H, W), any dtype.
        tiles: from :func:`plan_tiles` for this image's size (non-empty, one size).

    Returns:
        (T, tile, tile, C) (or (T, tile, tile) for a 2-D image), same dtype; regions outside
        a small image are filled by reflection.
    """
    if image.ndim not in (2, 3):
        raise ValueError(f"extract_tiles: image must be (H, W) or (H, W, C), got shape {image.shape}.")
    if not tiles:
        raise ValueError("extract_tiles: no tiles given.")
    size = _tile_size(tiles)
    height, width = image.shape[:2]
    out = np.empty((len(tiles), size, size, *image.shape[2:]), dtype=image.dtype)
    for i, t in enumerate(tiles):
        if t.y < 0 or t.x < 0 or t.y + t.h > height or t.x + t.w > width:
            raise ValueError(f"extract_tiles: {t} lies outside the {height}x{width} image.")
        out[i] = pad_tile(image[t.slices], size)
    return out


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


@dataclass(frozen=True)
class SceneOptions:
    """How a scene is cut, batched and labelled: what every application's scene pipeline takes
    (``icpd infer``'s :class:`~icpd.apps.infer.options.InferOptions` adds its outputs; ``icpd stream``
    uses these as they are). Checked once, when made (ValueError naming the option)."""

    threshold: float = 0.5  # foreground probability a class needs to win a pixel (>=)
    tile: int | None = None  # tile side in scene pixels; None: the model input S (see for_model)
    overlap: int = 32  # pixels shared by neighbouring tiles (blended with a raised cosine)
    batch: int = 8  # tiles per predictor call

    def __post_init__(self) -> None:
        check_threshold(self.threshold)  # the Predictor's rule and words
        if self.tile is not None and self.tile < 1:
            raise ValueError(f"--tile {self.tile}: must be >= 1 pixel (default: the model input size)")
        if self.overlap < 0 or (self.tile is not None and self.overlap >= self.tile):
            bound = f"tile ({self.tile})" if self.tile is not None else "tile"
            hint = f"; e.g. --overlap {self.tile // 4}" if self.tile is not None else ""
            if self.tile is not None and self.tile < MIN_TILE_ANY:
                raise ValueError(
                    f"--tile {self.tile}: too small for any model: tiles are resized to the model input, so one below "
                    f"a quarter of it (>= {MIN_TILE_ANY} px for every preset) is upsampled blur, and the tile count "
                    "grows as 1/tile²; omit --tile to use the model input size")
            raise ValueError(f"--overlap {self.overlap}: must satisfy 0 <= overlap < {bound}{hint}")
        if self.batch < 1:
            raise ValueError(f"--batch {self.batch}: must be >= 1")

    def for_model(self, model_size: int) -> Self:  # InferOptions stays InferOptions
        """These options with ``tile`` resolved (None -> the model input ``model_size``), so the
        overlap is checked against the actual tile once, here. ``self`` when the tile is set.

        Raises:
            ValueError: a tile below :func:`min_tile` (the message says why).
        """
        low = min_tile(model_size)
        if self.tile is not None and self.tile < low:
            raise ValueError(
                f"--tile {self.tile}: the smallest useful tile for this model is {low} px: each tile is resized "
                f"to the model input ({model_size} px), so a smaller one is upsampled more than "
                f"{model_size // low}x (blur, not detail) and the tile count grows as 1/tile²; "
                f"omit --tile for {model_size}")
        return self if self.tile is not None else replace(self, tile=model_size)

    def resolve_tile(self, model_size: int) -> int:
        """The tile side for a model of input ``model_size`` (:meth:`for_model`'s tile)."""
        tile = self.for_model(model_size).tile
        return model_size if tile is None else tile


def iter_tile_batches(
    image: np.ndarray, tiles: Sequence[Tile], batch_size: int
) -> Iterator[tuple[list[Tile], np.ndarray]]:
    """Yield ``(tiles_in_batch, (B, tile, tile, C) array)`` with ``B <= batch_size``, in order.

    Only one batch is materialised at a time, so memory stays at ``batch_size`` tiles.
    """
    if batch_size < 1:
        raise ValueError(f"iter_tile_batches: batch_size must be >= 1, got {batch_size}.")
    for start in range(0, len(tiles), batch_size):
        chunk = list(tiles[start : start + batch_size])
        yield chunk, extract_tiles(image, chunk)


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
    separable raised cosine of :func:`_ramp` on the sides that have a neighbouring tile (the one
    weight rule of every blender, so that they agree bit for bit)."""
    wy = _ramp(tile.size, overlap, tile.y > 0, tile.y + tile.h < height)[: tile.h]
    wx = _ramp(tile.size, overlap, tile.x > 0, tile.x + tile.w < width)[: tile.w]
    return wy[:, None] * wx[None, :]  # (h, w)


class Blender:
    """Accumulate per-tile probabilities into a whole-scene weighted average.

    Memory: two float32 accumulators, ``(C, H, W)`` sums and ``(H, W)`` weights, i.e.
    ``4 * (C + 1) * H * W`` bytes: 1.2 GB for a 10000 x 10000 scene with C = 2, plus the same
    ``(C, H, W)`` float32 again for :meth:`result`. Larger scenes are blended block by block
    (:class:`icpd.runtime.scene.SceneBlend`), with the same float32 sums in the same order.

    Exactness: with ``overlap = 0`` and tiles that partition the image, :meth:`result` equals
    the float32 tile probabilities placed side by side, bit for bit (every weight is 1.0).
    """

    def __init__(self, height: int, width: int, channels: int, overlap: int = 0) -> None:
        """Args: scene ``height``/``width`` in pixels, ``channels`` C of the probabilities, and
        the ``overlap`` the tiles were planned with (sets the ramp width)."""
        if height < 1 or width < 1 or channels < 1:
            raise ValueError(
                f"Blender: height, width and channels must be >= 1, got {height}, {width}, {channels}."
            )
        if overlap < 0:
            raise ValueError(f"Blender: overlap must be >= 0, got {overlap}.")
        self.height, self.width, self.channels, self.overlap = height, width, channels, overlap
        self._sum = np.zeros((channels, height, width), dtype=np.float32)
        self._weight = np.zeros((height, width), dtype=np.float32)

    def add(self, tile: Tile, probs: np.ndarray) -> None:
        """Add one tile's probabilities.

        Args:
            tile: where the tile came from (from :func:`plan_tiles` for this scene).
            probs: (C, tile.size, tile.size) probabilities (any float dtype; cast to float32);
                the part over padding (beyond ``tile.h``/``tile.w``) is ignored.
        """
        probs = np.asarray(probs)
        expected = (self.channels, tile.size, tile.size)
        if probs.shape != expected:
            raise ValueError(
                f"Blender.add: probs shape {probs.shape} != expected {expected} (C, tile, tile)."
            )
        if tile.y < 0 or tile.x < 0 or tile.y + tile.h > self.height or tile.x + tile.w > self.width:
            raise ValueError(f"Blender.add: {tile} lies outside the {self.height}x{self.width} scene.")
        window = tile_window(tile, self.height, self.width, self.overlap)
        rows, cols = tile.slices
        self._sum[:, rows, cols] += probs[:, : tile.h, : tile.w].astype(np.float32, copy=False) * window
        self._weight[rows, cols] += window

    def result(self) -> np.ndarray:
        """(C, H, W) float32 weighted average of everything added.

        Raises:
            ValueError: some pixels were covered by no tile (the plan and the scene disagree).
        """
        uncovered = int(np.count_nonzero(self._weight == 0))
        if uncovered:
            raise ValueError(
                f"Blender.result: {uncovered} of {self.height * self.width} pixels were covered by no "
                "tile. Add every tile from plan_tiles(height, width, ...) for this scene."
            )
        return self._sum / self._weight
