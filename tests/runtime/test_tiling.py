"""Tile planning, padding and the blend weights (the blending itself: test_scene_blend.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from icpd.runtime.tiling import Tile, pad_tile, plan_tiles, tile_window


def _coverage(height: int, width: int, tiles: list[Tile]) -> np.ndarray:
    count = np.zeros((height, width), np.int32)
    for t in tiles:
        count[t.slices] += 1
    return count


def test_plan_grid_and_last_tile_at_border() -> None:
    tiles = plan_tiles(10, 13, tile=4, overlap=1)  # stride 3
    ys = sorted({t.y for t in tiles})
    xs = sorted({t.x for t in tiles})
    assert ys == [0, 3, 6]  # 6 + 4 == 10: last row shifted to the border
    assert xs == [0, 3, 6, 9]  # 9 + 4 == 13
    assert all(t.h == t.w == t.size == 4 for t in tiles)
    assert len(tiles) == 12 and tiles[0] == Tile(0, 0, 4, 4, 4) and tiles[1].x == 3  # row-major
    assert (_coverage(10, 13, tiles) >= 1).all()


def test_plan_exact_fit_has_no_extra_tile() -> None:
    tiles = plan_tiles(8, 12, tile=4, overlap=0)
    assert [(t.y, t.x) for t in tiles] == [(y, x) for y in (0, 4) for x in (0, 4, 8)]
    assert (_coverage(8, 12, tiles) == 1).all()  # an exact partition


def test_plan_shifted_last_tile_overlaps_more() -> None:
    assert sorted({t.x for t in plan_tiles(4, 10, tile=4)}) == [0, 4, 6]


@pytest.mark.parametrize("overlap", [4, 5, -1])
def test_bad_overlap_refused(overlap: int) -> None:
    with pytest.raises(ValueError, match=f"overlap={overlap}"):
        plan_tiles(10, 10, tile=4, overlap=overlap)


def test_bad_sizes_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        plan_tiles(0, 10, tile=4)
    with pytest.raises(ValueError, match="tile"):
        plan_tiles(10, 10, tile=0)
    with pytest.raises(TypeError, match="tile"):
        plan_tiles(10, 10, tile=4.0)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    height=st.integers(1, 300),
    width=st.integers(1, 300),
    tile=st.integers(1, 64),
    data=st.data(),
)
def test_plan_covers_every_pixel(height: int, width: int, tile: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(0, tile - 1))
    tiles = plan_tiles(height, width, tile, overlap)
    assert (_coverage(height, width, tiles) >= 1).all()
    stride = tile - overlap
    for t in tiles:
        assert t.size == tile and t.h == min(tile, height) and t.w == min(tile, width)
        assert 0 <= t.y and t.y + t.h <= height and 0 <= t.x and t.x + t.w <= width
    assert max(t.y + t.h for t in tiles) == height and max(t.x + t.w for t in tiles) == width
    for origins in (sorted({t.y for t in tiles}), sorted({t.x for t in tiles})):
        assert all(b - a <= stride for a, b in itertools.pairwise(origins))  # grid stride, no gaps
    assert len(tiles) == len(set(tiles))


def test_small_image_is_reflect_padded() -> None:
    img = np.arange(3 * 5, dtype=np.float32).reshape(3, 5, 1)
    tiles = plan_tiles(3, 5, tile=8, overlap=2)
    assert tiles == [Tile(0, 0, 3, 5, 8)]
    padded = pad_tile(img[tiles[0].slices], 8)
    assert padded.shape == (8, 8, 1)
    np.testing.assert_array_equal(padded[:3, :5], img)
    np.testing.assert_array_equal(padded[3, :5, 0], img[1, :, 0])  # reflection, not zeros
    np.testing.assert_array_equal(padded[:3, 5, 0], img[:, 3, 0])
    full = np.zeros((8, 8, 3), np.uint8)
    assert pad_tile(full, 8) is full  # a whole tile is not copied


def test_tile_window_is_the_raised_cosine_ramp_exactly() -> None:
    """The blend ramp's shape, value by value: r[i] = sin^2(pi (i + 0.5) / (2 overlap)) over ``overlap``
    px on each side with a neighbour, 1 elsewhere and on the scene's border (a change of the ramp's
    shape changes every blended output)."""
    r = np.sin(np.pi * (np.arange(4) + 0.5) / 8) ** 2  # overlap 4
    np.testing.assert_allclose(r, [0.03806023, 0.30865828, 0.69134172, 0.96193977], rtol=1e-7)
    tiles = plan_tiles(12, 20, tile=8, overlap=4)  # rows at 0, 4; columns at 0, 4, 8, 12
    inner = next(t for t in tiles if (t.y, t.x) == (4, 4))  # neighbours left and right, above only
    w = tile_window(inner, 12, 20, 4)
    assert w.dtype == np.float32 and w.shape == (8, 8)
    wy = np.concatenate([r, np.ones(4)])  # ramps in at the top; the bottom is the scene's border
    wx = np.concatenate([r, r[::-1]])  # ramps in and out
    np.testing.assert_array_equal(w, (wy.astype(np.float32)[:, None] * wx.astype(np.float32)[None, :]))
    corner = tile_window(tiles[0], 12, 20, 4)  # top-left: ramps only towards its right and bottom neighbours
    np.testing.assert_array_equal(corner[0], np.concatenate([np.ones(4), r[::-1]]).astype(np.float32))
    np.testing.assert_array_equal(corner[:, 0], np.concatenate([np.ones(4), r[::-1]]).astype(np.float32))
    assert (tile_window(tiles[0], 12, 20, 0) == 1).all()  # overlap 0: plain placement
    alone = tile_window(Tile(0, 0, 3, 5, 8), 3, 5, 2)  # one tile over a small scene: every side a border
    assert (alone == 1).all() and alone.shape == (3, 5)


def test_weights_sum_to_one_across_a_seam_of_exactly_overlap() -> None:
    tiles = plan_tiles(8, 12, tile=8, overlap=4)
    assert [t.x for t in tiles] == [0, 4]
    left, right = (tile_window(t, 8, 12, 4) for t in tiles)
    seam = left[0, 4:] + right[0, :4]
    np.testing.assert_allclose(seam, 1.0, rtol=1e-6)
    assert (np.diff(right[0, :4]) > 0).all() and (right[0, :4] > 0).all()  # never 0: every pixel is covered
