"""SceneBlend: block-by-block blending equals a plain whole-scene weighted sum bit for bit, hands out every
output block once, and holds memory that follows the scene's height, not its width."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from icpd.io.viz import _inner_edges
from icpd.runtime.predictor import merge_labels
from icpd.runtime.scene import ArraySource, SceneBlend, plan_batches, resize_maps
from icpd.runtime.tiling import plan_tiles
from tests.runtime.scene_reference import blend_tiles

S = 16  # model-size probability maps, resized to the tile as the predictor's are


def _probs(tiles, classes: int) -> np.ndarray:
    """(B, N, S, S) float32 'predictions' that depend on the tile only (not on the batch)."""
    return np.stack([np.random.default_rng(t.y * 100_003 + t.x).random((classes, S, S), dtype=np.float32)
                     for t in tiles])


def _blend(h: int, w: int, tile: int, overlap: int, batch: int, classes: int = 2, block: int = 16,
           nodata: np.ndarray | None = None) -> tuple[SceneBlend, dict[str, np.ndarray]]:
    class Source(ArraySource):
        def nodata_mask(self, y, h_, x=0, w_=None):
            return None if nodata is None else nodata[y:y + h_, x:x + (w - x if w_ is None else w_)]

    batches = plan_batches(h, w, tile, overlap, batch)
    source = Source(np.zeros((h, w, 3), np.uint8))
    blend = SceneBlend(h, w, classes, tile, overlap, 0.5, True, batches, source, block)
    out = {"probs": np.full((classes, h, w), np.nan, np.float32),
           "priors": np.full((classes, h, w), np.nan, np.float32),
           "labels": np.zeros((h, w), np.uint8), "edges": np.zeros((h, w), bool),
           "count": np.zeros((h, w), np.int32)}
    for chunk in batches:
        p = _probs(chunk, classes)
        for y, x, probs, labels, priors, edges in blend.add(p, p * 0.5):
            rows, cols = slice(y, y + labels.shape[0]), slice(x, x + labels.shape[1])
            out["probs"][:, rows, cols], out["priors"][:, rows, cols] = probs, priors
            out["labels"][rows, cols], out["edges"][rows, cols] = labels, edges
            out["count"][rows, cols] += 1
    assert blend.done
    return blend, out


@pytest.mark.parametrize(("h", "w", "tile", "overlap", "batch"), [
    (301, 190, 64, 16, 3),  # taller than wide: row-major batches
    (130, 517, 48, 12, 4),  # wider than tall: swept left to right, batches wrapping rows
    (97, 1000, 100, 30, 2),  # one tile row shorter than the tile (padded)
    (1100, 1300, 600, 40, 1),  # strips of 560 rows: 2 px outlines, reaching into the next block
    (64, 200, 16, 0, 5),  # overlap 0: every weight 1, plain placement
])
def test_blocks_equal_the_whole_scene_weighted_sum_and_the_old_strip_outlines(h, w, tile, overlap, batch):
    nodata = np.zeros((h, w), bool)
    nodata[:, : w // 5] = True  # a nodata band on the left
    _, out = _blend(h, w, tile, overlap, batch, nodata=nodata)
    assert (out["count"] == 1).all()  # every pixel in exactly one block
    tiles = plan_tiles(h, w, tile, overlap)
    ref = blend_tiles(h, w, overlap, tiles, [resize_maps(_probs([t], 2)[0], tile, tile) for t in tiles])
    ref_priors = blend_tiles(h, w, overlap, tiles,
                             [resize_maps(_probs([t], 2)[0] * 0.5, tile, tile) for t in tiles])
    np.testing.assert_array_equal(out["probs"], ref)  # bit for bit: same float32 sums, same order
    np.testing.assert_array_equal(out["priors"], ref_priors)
    labels = np.where(nodata, 255, merge_labels(ref[None], 0.5)[0])
    np.testing.assert_array_equal(out["labels"], labels)
    # the overlay outlines of the former full-width strips (rows between the row-major batches' first tiles)
    shown = np.where(labels == 255, 0, labels)
    seams = sorted({tiles[i].y for i in range(0, len(tiles), batch)} | {h})  # starts with 0
    assert len(seams) > 2 or h <= tile
    for a, b in itertools.pairwise(seams):
        width = max(1, min(b - a, w) // 256)
        np.testing.assert_array_equal(out["edges"][a:b], _inner_edges(shown[a:b], width))
    assert out["edges"].any()


def test_wide_scenes_are_swept_left_to_right_in_the_row_major_batches():
    rowmajor = plan_tiles(130, 517, 48, 12)
    batches = plan_batches(130, 517, 48, 12, 4)
    chunks = [rowmajor[i:i + 4] for i in range(0, len(rowmajor), 4)]  # the row-major plan's predictor calls
    assert len(batches) == len(chunks) and all(c in chunks for c in batches)
    lefts = [min(t.x for t in c) for c in batches]
    assert lefts == sorted(lefts) and batches != chunks
    tall = plan_batches(517, 130, 48, 12, 4)  # taller than wide: row-major, as before
    assert [t for c in tall for t in c] == plan_tiles(517, 130, 48, 12)


def test_held_memory_does_not_grow_with_the_scene_width():
    """Peak bytes held between batches (tile pieces over waiting blocks, blocks waiting for their
    neighbours' labels): bounded by a band of (batch + 3) tiles over the scene's height plus the
    tiles of batches that wrap from one tile row to the next, whatever the width."""
    h, tile, overlap, batch, classes, block = 200, 64, 8, 3, 2, 16
    rows = len({t.y for t in plan_tiles(h, 1000, tile, overlap)})
    per_px = 4 * (2 * classes + 1) + 1  # float32 probs, priors, weight; uint8 labels
    bound = per_px * (h * (batch + 3) * tile + (rows - 1) * (batch - 1) * tile * tile)  # no width in it
    peaks = {}
    for w in (4_000, 16_000):
        blend, out = _blend(h, w, tile, overlap, batch, classes, block)
        assert (out["count"] == 1).all()
        peaks[w] = blend.peak_bytes
        assert blend.held_bytes == 0  # nothing left once the last block is out
    strip = 4 * (classes + 1) * 2 * tile * 16_000  # the former strip blender's band alone, probs only
    assert peaks[4_000] <= bound and peaks[16_000] <= bound < strip / 10, (peaks, bound, strip)
