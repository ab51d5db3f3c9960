"""One scene, window by window: tiles read from a source, predicted, blended and written block by block.

    with WindowReader("scene.tif") as src:
        run_scene(predictor, src, tile=1024, overlap=32, batch=8, threshold=0.5, sink=sink)
        # sink(y, x, probs, labels, priors, edges) once per output block, in no fixed order

Memory does not grow with the scene's width. The output is cut into the output GeoTIFF's own
blocks (:data:`~icpd.io.windows.BLOCK` px, :class:`SceneBlend`); a block is blended and handed to
the sink as soon as every tile over it is predicted, and only the parts of predicted tiles that lie
over blocks still waiting are held. A scene wider than tall (in tiles) is swept left to right
(:func:`plan_batches`), so what waits is a column of blocks, not a row as wide as the scene: the
peak follows the tile size, batch, overlap and the scene's shorter side. Tiles are read per batch
(one window per tile row of the batch), never as full-width strips.

This is the one scene pipeline: ``icpd infer`` (a file, by windows), ``icpd infer --ray`` (the
actors predict, the driver blends with :class:`SceneBlend`: :mod:`icpd.apps.infer.ray_runner`),
``icpd stream`` and ``icpd serve`` (a frame or a request body in memory: :func:`segment_array`).
Each predictor call gets the tiles of the row-major plan cut every ``batch`` tiles (only the order
of the calls changes), and a block sums its tiles' weighted probabilities in plan order from zero,
so every pixel sees the float32 additions of a plain whole-scene weighted sum, in the same order
(bit-equal, tested against one written plainly in the tests).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np

from icpd.io.viz import _inner_edges  # the overlay's own outline rule
from icpd.io.windows import BLOCK
from icpd.runtime.predictor import merge_labels
from icpd.runtime.tiling import Tile, pad_tile, plan_tiles, tile_window

if TYPE_CHECKING:
    from icpd.runtime.predictor import Predictor

__all__ = ["NODATA_LABEL", "ArraySource", "Block", "BlockSink", "SceneBlend", "ScenePrediction",
           "SceneSource", "SceneStats", "plan_batches", "read_batch", "run_scene", "segment_array"]

NODATA_LABEL = 255  # label of input nodata pixels
# (y, x, probs (N, h, w) float32, labels (h, w) uint8, priors (N, h, w) or None, edges (h, w) bool)
Block = tuple[int, int, np.ndarray, np.ndarray, "np.ndarray | None", np.ndarray]
BlockSink = Callable[[int, int, np.ndarray, np.ndarray, "np.ndarray | None", np.ndarray], None]


class SceneSource(Protocol):
    """Anything that hands out windows of a scene as (h, w, 3) uint8 RGB (a window reader, an array)."""

    height: int
    width: int
    nodata: float | None  # the file's nodata value (pixels of it in all three bands: nodata), or None

    def read(self, y: int, x: int, h: int, w: int) -> np.ndarray: ...

    def nodata_mask(self, y: int, h: int, x: int = 0, w: int | None = None) -> np.ndarray | None:
        """(h, w) bool: nodata pixels of the window (``w`` None: to the right edge), or None."""
        ...

    def close(self) -> None:
        """Release the file (a no-op for a scene in memory)."""
        ...


class ArraySource:
    """An (H, W, 3) uint8 scene already in memory, as a :class:`SceneSource` (no nodata)."""

    nodata = None

    def __init__(self, pixels: np.ndarray) -> None:
        self.pixels = pixels
        self.height, self.width = int(pixels.shape[0]), int(pixels.shape[1])

    def read(self, y: int, x: int, h: int, w: int) -> np.ndarray:
        return self.pixels[y : y + h, x : x + w]

    def nodata_mask(self, y: int, h: int, x: int = 0, w: int | None = None) -> np.ndarray | None:
        return None

    def close(self) -> None:
        pass


def resize_maps(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """(C, h, w) float -> (C, height, width) float32, bilinear (cv2, half-pixel centres)."""
    if maps.shape[1:] == (height, width):
        return maps.astype(np.float32, copy=False)
    hwc = np.ascontiguousarray(np.moveaxis(maps.astype(np.float32, copy=False), 0, -1))  # C h w -> h w C
    out = cv2.resize(hwc, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.moveaxis(out.reshape(height, width, -1), -1, 0)  # H W C -> C H W


def plan_batches(height: int, width: int, tile: int, overlap: int, batch: int) -> list[list[Tile]]:
    """The scene's tiles (:func:`plan_tiles`, row-major) cut into predictor batches of ``batch``.

    The batches are always those of the row-major plan; a scene with more tile columns than tile
    rows gets them in left-to-right order (by their leftmost tile), so that the blocks waiting for
    later tiles form a column as tall as the scene instead of a row as wide as it."""
    tiles = plan_tiles(height, width, tile, overlap)
    chunks = [tiles[i : i + batch] for i in range(0, len(tiles), batch)]
    rows = len({t.y for t in tiles})
    if len(tiles) // rows > rows:
        chunks.sort(key=lambda c: (min(t.x for t in c), c[0].y, c[0].x))
    return chunks


def read_batch(source: SceneSource, chunk: Sequence[Tile]) -> np.ndarray:
    """(B, tile, tile, 3) uint8: the tiles of ``chunk`` read from ``source`` (padded by reflection),
    one window per tile row spanning just the batch's tiles (memory follows the batch, not the
    scene's width). The pixels equal a whole-scene read's (conversions are per pixel)."""
    spans: dict[int, tuple[int, int, int]] = {}  # tile row y -> (h, x0, x1)
    for t in chunk:
        h, x0, x1 = spans.get(t.y, (t.h, t.x, t.x + t.w))
        spans[t.y] = (h, min(x0, t.x), max(x1, t.x + t.w))
    rows = {y: (x0, source.read(y, x0, h, x1 - x0)) for y, (h, x0, x1) in spans.items()}
    tiles = []
    for t in chunk:
        x0, pixels = rows[t.y]
        tiles.append(pad_tile(pixels[:, t.x - x0 : t.x - x0 + t.w], t.size))
    return np.stack(tiles)


@dataclass
class SceneStats:
    """Per-class pixel counts of one scene's label map (index 0 background)."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def add(self, labels: np.ndarray, classes: int) -> None:
        c = np.bincount(labels.ravel(), minlength=classes + 1)[: classes + 1].astype(np.int64)
        self.counts = c if self.counts.size == 0 else self.counts + c


def _outline_width(height: int, width: int) -> int:
    """:func:`~icpd.io.viz.overlay`'s outline width for an ``height x width`` picture."""
    return max(1, min(height, width) // 256)


@dataclass
class _Piece:
    """The part of one predicted tile that lies over one output block (block coordinates)."""

    order: int  # the tile's index in the row-major plan: a block sums its pieces in this order
    y: int
    x: int
    probs: np.ndarray  # (N, h, w) float32: probabilities * weight
    weight: np.ndarray  # (h, w) float32 blend weights
    priors: np.ndarray | None  # (N, h, w) float32 priors * weight


class SceneBlend:
    """The blending half of a scene run, block by block: feed it each batch's model-size
    probabilities in the order of ``batches``; it yields the output blocks that became final.

    Args:
        height, width: scene size; classes: N; tile, overlap: the plan's; threshold: of the labels.
        priors: blend priors too. batches: from :func:`plan_batches`. source: for the nodata mask.
        block: side of the output blocks (the output GeoTIFF's tiling).

    A block is blended once every tile over it is predicted. Its overlay outlines (``edges``) need
    the labels around it, so it is handed out once its neighbours are blended too; they are cut
    at the rows where the former full-width strips ended (the first rows of the row-major
    batches), so that the overlays stay as they were. ``held_bytes``/``peak_bytes``: what the
    blender holds between batches (tile pieces, blocks waiting for neighbours, their labels).
    """

    def __init__(self, height: int, width: int, classes: int, tile: int, overlap: int, threshold: float,
                 priors: bool, batches: Sequence[Sequence[Tile]], source: SceneSource,
                 block: int = BLOCK) -> None:
        self.height, self.width, self.classes, self.overlap = height, width, classes, overlap
        self.threshold, self.priors, self.batches = threshold, priors, batches
        self.source, self.block = source, block
        tiles = sorted((t for c in batches for t in c), key=lambda t: (t.y, t.x))  # the row-major plan
        if any(t.size != tile for t in tiles):
            raise ValueError(f"SceneBlend: the batches' tiles are not {tile} px.")
        self._order = {t: i for i, t in enumerate(tiles)}
        grid = (-(-height // block), -(-width // block))
        self._need = np.zeros(grid, np.int32)  # tiles over each block not predicted yet
        for t in tiles:
            self._need[self._span(t)] += 1
        self._blended = np.zeros(grid, bool)
        self._emitted = np.zeros(grid, bool)
        self._pieces: dict[tuple[int, int], list[_Piece]] = {}
        self._ready: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
        # labels with nodata as 0, as the overlay sees them
        self._labels: dict[tuple[int, int], np.ndarray] = {}
        seams = sorted({min(c, key=self._order.__getitem__).y for c in batches} | {0, height})
        self._strips = list(itertools.pairwise(seams))
        self._halo = max(-(-_outline_width(b - a, width) // block) for a, b in self._strips)  # in blocks
        self._next = 0
        self.held_bytes = self.peak_bytes = 0

    def _span(self, t: Tile) -> tuple[slice, slice]:
        b = self.block
        return slice(t.y // b, (t.y + t.h - 1) // b + 1), slice(t.x // b, (t.x + t.w - 1) // b + 1)

    def _box(self, key: tuple[int, int]) -> tuple[int, int, int, int]:
        y, x = key[0] * self.block, key[1] * self.block
        return y, x, min(self.block, self.height - y), min(self.block, self.width - x)

    def add(self, probs: np.ndarray, priors: np.ndarray | None) -> Iterator[Block]:
        """Blend the next batch: ``probs`` (B, N, S, S) (and ``priors``) from the predictor.
        Yields ``(y, x, probs (N, h, w), labels (h, w), priors or None, edges (h, w))`` per final block."""
        chunk = self.batches[self._next]
        self._next += 1
        fresh, done = [], []
        for i, t in enumerate(chunk):
            window = tile_window(t, self.height, self.width, self.overlap)
            p = resize_maps(probs[i], t.size, t.size)[:, : t.h, : t.w] * window
            q = None
            if self.priors and priors is not None:
                q = resize_maps(priors[i], t.size, t.size)[:, : t.h, : t.w] * window
            rows, cols = self._span(t)
            for key in ((r, c) for r in range(rows.start, rows.stop) for c in range(cols.start, cols.stop)):
                y, x, h, w = self._box(key)
                ys = slice(max(t.y, y) - t.y, min(t.y + t.h, y + h) - t.y)  # tile rows over the block
                xs = slice(max(t.x, x) - t.x, min(t.x + t.w, x + w) - t.x)
                piece = _Piece(self._order[t], t.y + ys.start - y, t.x + xs.start - x, p[:, ys, xs],
                               window[ys, xs], None if q is None else q[:, ys, xs])
                self._pieces.setdefault(key, []).append(piece)
                self._need[key] -= 1
                (done if self._need[key] == 0 else fresh).append((key, piece))
        for key, _ in done:
            self._blend(key)
        for key, piece in fresh:  # held past this batch: copies, so that the batch's arrays can go
            if key in self._pieces:
                piece.probs, piece.weight = piece.probs.copy(), piece.weight.copy()
                piece.priors = None if piece.priors is None else piece.priors.copy()
        yield from self._emit([key for key, _ in done])
        self.held_bytes = sum(pc.probs.nbytes + pc.weight.nbytes
                              + (0 if pc.priors is None else pc.priors.nbytes)
                              for pieces in self._pieces.values() for pc in pieces)
        self.held_bytes += sum(a.nbytes for r in self._ready.values() for a in r if a is not None)
        self.held_bytes += sum(a.nbytes for a in self._labels.values())
        self.peak_bytes = max(self.peak_bytes, self.held_bytes)

    def _blend(self, key: tuple[int, int]) -> None:
        """Sum the block's pieces in plan order (as a whole-scene sum would per pixel) and label it."""
        y, x, h, w = self._box(key)
        total, weight = np.zeros((self.classes, h, w), np.float32), np.zeros((h, w), np.float32)
        prior = np.zeros((self.classes, h, w), np.float32) if self.priors else None
        for pc in sorted(self._pieces.pop(key), key=lambda pc: pc.order):
            rows, cols = slice(pc.y, pc.y + pc.weight.shape[0]), slice(pc.x, pc.x + pc.weight.shape[1])
            total[:, rows, cols] += pc.probs
            weight[rows, cols] += pc.weight
            if prior is not None and pc.priors is not None:
                prior[:, rows, cols] += pc.priors
        if (uncovered := int(np.count_nonzero(weight == 0))):
            raise ValueError(f"SceneBlend: {uncovered} pixels of the block at y={y} x={x} were covered by "
                             "no tile.")
        probs = total / weight
        labels = merge_labels(probs[None], self.threshold)[0]
        mask = self.source.nodata_mask(y, h, x, w)
        if mask is not None:
            labels = np.where(mask, np.uint8(NODATA_LABEL), labels)
        self._ready[key] = (probs, labels, None if prior is None else prior / weight)
        self._labels[key] = labels if mask is None else np.where(mask, np.uint8(0), labels)
        self._blended[key] = True

    def _near(self, key: tuple[int, int]) -> tuple[slice, slice]:
        r, c = self._halo, self._blended.shape
        return (slice(max(0, key[0] - r), min(c[0], key[0] + r + 1)),
                slice(max(0, key[1] - r), min(c[1], key[1] + r + 1)))

    def _emit(self, blended: list[tuple[int, int]]) -> Iterator[Block]:
        """Hand out the blended blocks whose neighbours are all blended (their outlines are known)."""
        near = {(r, c) for key in blended for sl in [self._near(key)]
                for r in range(sl[0].start, sl[0].stop) for c in range(sl[1].start, sl[1].stop)}
        out = sorted(k for k in near if k in self._ready and self._blended[self._near(k)].all())
        for key in out:
            probs, labels, priors = self._ready.pop(key)
            y, x, _, _ = self._box(key)
            yield y, x, probs, labels, priors, self._edges(key)
            self._emitted[key] = True
        for key in {(r, c) for k in out for sl in [self._near(k)]
                    for r in range(sl[0].start, sl[0].stop) for c in range(sl[1].start, sl[1].stop)}:
            if key in self._labels and self._emitted[self._near(key)].all():
                del self._labels[key]  # no block around it needs its labels any more

    def _edges(self, key: tuple[int, int]) -> np.ndarray:
        """(h, w) bool outline pixels of the block: :func:`~icpd.io.viz._inner_edges` of the
        labels around it, computed within each former strip (rows ``a..b``) at that strip's width."""
        y, x, h, w = self._box(key)
        edges = np.zeros((h, w), bool)
        if not self._labels[key].any():
            return edges  # outlines are drawn on labelled pixels only
        for a, b in self._strips:
            top, bottom = max(a, y), min(b, y + h)
            if top >= bottom:
                continue
            k = _outline_width(b - a, self.width)
            y0, y1, x0, x1 = max(a, y - k), min(b, y + h + k), max(0, x - k), min(self.width, x + w + k)
            region = np.empty((y1 - y0, x1 - x0), np.uint8)
            for r in range(y0 // self.block, (y1 - 1) // self.block + 1):
                for c in range(x0 // self.block, (x1 - 1) // self.block + 1):
                    by, bx, bh, bw = self._box((r, c))
                    sy, sx = slice(max(by, y0), min(by + bh, y1)), slice(max(bx, x0), min(bx + bw, x1))
                    region[sy.start - y0 : sy.stop - y0, sx.start - x0 : sx.stop - x0] = \
                        self._labels[(r, c)][sy.start - by : sy.stop - by, sx.start - bx : sx.stop - bx]
            edges[top - y : bottom - y] = _inner_edges(region, k)[top - y0 : bottom - y0, x - x0 : x - x0 + w]
        return edges

    @property
    def done(self) -> bool:
        return self._next == len(self.batches)


def run_scene(predictor: Predictor, source: SceneSource, tile: int, overlap: int, batch: int,
              threshold: float, sink: BlockSink, priors: bool = False,
              on_tiles: Callable[[int, int], None] | None = None,
              batches: Sequence[Sequence[Tile]] | None = None) -> int:
    """Predict every class of ``predictor`` on ``source`` batch by batch; ``sink`` gets each output
    block once, as it becomes final. Returns the number of tiles.

    ``batches``: the scene's plan when the caller made it already (:func:`plan_batches` of these
    ``tile``, ``overlap`` and ``batch``; a run plans each scene once), else planned here."""
    if batches is None:
        batches = plan_batches(source.height, source.width, tile, overlap, batch)
    total = sum(len(c) for c in batches)
    blend = SceneBlend(source.height, source.width, len(predictor.class_names), tile, overlap, threshold,
                       priors, batches, source)
    done = 0
    for chunk in batches:
        pred = predictor.predict(read_batch(source, chunk), threshold, priors=priors)
        for block in blend.add(pred.probs, pred.priors):
            sink(*block)
        done += len(chunk)
        if on_tiles is not None:
            on_tiles(done, total)
    return total


@dataclass
class ScenePrediction:
    """One in-memory scene's result. probs (N, H, W) float32 per-class foreground probability;
    labels (H, W) uint8 (0 background, i + 1 = class_names[i]); priors (N, H, W) float32 when
    asked; tiles: predictor inputs used (1 for a scene no larger than one tile)."""

    probs: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    tiles: int
    priors: np.ndarray | None = None


def segment_array(predictor: Predictor, pixels: np.ndarray, tile: int, overlap: int, batch: int,
                  threshold: float, priors: bool = False,
                  on_tiles: Callable[[int, int], None] | None = None) -> ScenePrediction:
    """:func:`run_scene` over an (H, W, 3) uint8 RGB scene already in memory, its blocks gathered
    into whole-scene arrays: the same tiles, blending and labels as a file run (one pipeline).
    For frames, request bodies and tests; a scene on disk goes through its window reader."""
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"segment_array: expected (H, W, 3) uint8 RGB, got {pixels.shape} {pixels.dtype}")
    height, width = pixels.shape[:2]
    n = len(predictor.class_names)
    probs = np.zeros((n, height, width), np.float32)
    labels = np.zeros((height, width), np.uint8)
    prior_maps = np.zeros((n, height, width), np.float32) if priors else None

    def gather(y: int, x: int, p: np.ndarray, lab: np.ndarray, pri: np.ndarray | None,
               _edges: np.ndarray) -> None:
        h, w = lab.shape
        probs[:, y : y + h, x : x + w] = p
        labels[y : y + h, x : x + w] = lab
        if prior_maps is not None and pri is not None:
            prior_maps[:, y : y + h, x : x + w] = pri

    tiles = run_scene(predictor, ArraySource(pixels), tile, overlap, batch, threshold, gather, priors,
                      on_tiles)
    return ScenePrediction(probs, labels, list(predictor.class_names), tiles, prior_maps)
