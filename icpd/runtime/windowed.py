"""One scene, window by window: tiles read from a source, predicted, blended in a strip, written.

    with WindowReader("scene.tif") as src:
        stats = run_scene(predictor, src, options, sink)   # sink(first_row, probs, labels, priors)

Memory is bounded by the tile batch, the blending strip (about two tile rows of the full
width, :class:`~icpd.runtime.tiling.StripBlender`) and the output strip, not by the scene:
tiles are cut from full-width strips of the source read one tile row at a time.
The tiles, their batches and the float32 arithmetic are those of
:func:`icpd.runtime.infer.predict_scene`, so the labels and probabilities equal the in-memory
path's, bit for bit (tested). Prediction and blending are separate steps
(:class:`SceneBlend`) so that a Ray actor can predict and the driver blend
(:mod:`icpd.cluster`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np

from icpd.runtime.predictor import merge_labels
from icpd.runtime.tiling import StripBlender, Tile, pad_tile, plan_tiles

if TYPE_CHECKING:
    from icpd.runtime.predictor import Predictor

__all__ = ["ArraySource", "SceneBlend", "SceneSource", "SceneStats", "plan_batches", "read_batch", "run_scene"]

# (first scene row, probs (N, h, W) float32, labels (h, W) uint8, priors (N, h, W) or None)
RowSink = Callable[[int, np.ndarray, np.ndarray, "np.ndarray | None"], None]


class SceneSource(Protocol):
    """Anything that hands out windows of a scene as (h, w, 3) uint8 RGB."""

    height: int
    width: int

    def read(self, y: int, x: int, h: int, w: int) -> np.ndarray: ...


class ArraySource:
    """An (H, W, 3) uint8 scene already in memory, as a :class:`SceneSource`."""

    def __init__(self, pixels: np.ndarray) -> None:
        self.pixels = pixels
        self.height, self.width = int(pixels.shape[0]), int(pixels.shape[1])

    def read(self, y: int, x: int, h: int, w: int) -> np.ndarray:
        return self.pixels[y : y + h, x : x + w]


def resize_maps(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """(C, h, w) float -> (C, height, width) float32, bilinear (cv2, half-pixel centres)."""
    if maps.shape[1:] == (height, width):
        return maps.astype(np.float32, copy=False)
    hwc = np.ascontiguousarray(np.moveaxis(maps.astype(np.float32, copy=False), 0, -1))  # C h w -> h w C
    out = cv2.resize(hwc, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.moveaxis(out.reshape(height, width, -1), -1, 0)  # H W C -> C H W


def plan_batches(height: int, width: int, tile: int, overlap: int, batch: int) -> list[list[Tile]]:
    """The scene's tiles (:func:`plan_tiles`, row-major) in predictor batches of ``batch``."""
    tiles = plan_tiles(height, width, tile, overlap)
    return [tiles[i : i + batch] for i in range(0, len(tiles), batch)]


class _Strips:
    """Full-width strips of the source, one per tile row, the last two kept (a batch may span two)."""

    def __init__(self, source: SceneSource) -> None:
        self.source, self.cache = source, {}

    def patch(self, t: Tile) -> np.ndarray:
        if t.y not in self.cache:
            if len(self.cache) >= 2:
                self.cache.pop(min(self.cache))
            self.cache[t.y] = self.source.read(t.y, 0, t.h, self.source.width)
        return self.cache[t.y][:, t.x : t.x + t.w]


def read_batch(source: SceneSource, chunk: Sequence[Tile], strips: _Strips | None = None) -> np.ndarray:
    """(B, tile, tile, 3) uint8: the tiles of ``chunk`` read from ``source`` (padded by reflection).

    With ``strips`` (a scene read batch after batch) full-width strips are read once per tile row
    and shared; without (one batch on its own, as a Ray task reads it) one window per tile row
    spans just the batch's tiles: a full-width strip per batch would read a 20,000 px wide scene
    ~26 times over. The pixels are the same either way (conversions are per pixel)."""
    if strips is not None:
        return np.stack([pad_tile(strips.patch(t), t.size) for t in chunk])
    spans: dict[int, tuple[int, int, int]] = {}  # tile row y -> (h, x0, x1)
    for t in chunk:
        h, x0, x1 = spans.get(t.y, (t.h, t.x, t.x + t.w))
        spans[t.y] = (h, min(x0, t.x), max(x1, t.x + t.w))
    rows = {y: (x0, source.read(y, x0, h, x1 - x0)) for y, (h, x0, x1) in spans.items()}
    return np.stack([pad_tile(rows[t.y][1][:, t.x - rows[t.y][0] : t.x - rows[t.y][0] + t.w], t.size) for t in chunk])


@dataclass
class SceneStats:
    """Per-class pixel counts of one scene's label map (index 0 background)."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def add(self, labels: np.ndarray, classes: int) -> None:
        c = np.bincount(labels.ravel(), minlength=classes + 1)[: classes + 1].astype(np.int64)
        self.counts = c if self.counts.size == 0 else self.counts + c


class SceneBlend:
    """The blending half of a scene run: feed it each batch's model-size probabilities in order;
    it returns the rows that became final. Used by :func:`run_scene` and by the Ray driver."""

    def __init__(self, height: int, width: int, classes: int, tile: int, overlap: int, threshold: float,
                 priors: bool, batches: Sequence[Sequence[Tile]]) -> None:
        self.height, self.threshold, self.batches = height, threshold, batches
        self._next = 0
        self._probs = StripBlender(height, width, classes, overlap, rows=2 * tile)
        self._priors = StripBlender(height, width, classes, overlap, rows=2 * tile) if priors else None

    def add(self, probs: np.ndarray, priors: np.ndarray | None) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray | None]]:
        """Blend the next batch: ``probs`` (B, N, S, S) (and ``priors``) from the predictor.
        Yields ``(first row, probs (N, h, W), labels (h, W), priors or None)`` for final rows."""
        chunk = self.batches[self._next]
        self._next += 1
        for i, t in enumerate(chunk):
            self._probs.add(t, resize_maps(probs[i], t.size, t.size))
            if self._priors is not None and priors is not None:
                self._priors.add(t, resize_maps(priors[i], t.size, t.size))
        until = self.batches[self._next][0].y if self._next < len(self.batches) else self.height
        if until > self._probs.top:
            top, p = self._probs.flush(until)
            pri = self._priors.flush(until)[1] if self._priors is not None else None
            yield top, p, merge_labels(p[None], self.threshold)[0], pri

    @property
    def done(self) -> bool:
        return self._next == len(self.batches)


def run_scene(predictor: Predictor, source: SceneSource, tile: int, overlap: int, batch: int, threshold: float,
              sink: RowSink, priors: bool = False, on_tiles: Callable[[int, int], None] | None = None) -> int:
    """Predict every class of ``predictor`` on ``source`` strip by strip; ``sink`` gets the final
    rows top to bottom. Returns the number of tiles."""
    batches = plan_batches(source.height, source.width, tile, overlap, batch)
    total = sum(len(c) for c in batches)
    blend = SceneBlend(source.height, source.width, len(predictor.class_names), tile, overlap, threshold,
                       priors, batches)
    strips, done = _Strips(source), 0
    for chunk in batches:
        pred = predictor.predict(read_batch(source, chunk, strips), threshold, priors=priors)
        for rows in blend.add(pred.probs, pred.priors):
            sink(*rows)
        done += len(chunk)
        if on_tiles is not None:
            on_tiles(done, total)
    return total
