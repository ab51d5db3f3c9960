"""Tile planning, extraction and blending."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from icpd.runtime.tiling import Blender, Tile, extract_tiles, iter_tile_batches, plan_tiles


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


def test_extract_tiles_matches_slices() -> None:
    img = np.arange(10 * 13 * 3, dtype=np.uint8).reshape(10, 13, 3)
    tiles = plan_tiles(10, 13, tile=4, overlap=1)
    batch = extract_tiles(img, tiles)
    assert batch.shape == (len(tiles), 4, 4, 3) and batch.dtype == np.uint8
    for t, patch in zip(tiles, batch):
        np.testing.assert_array_equal(patch, img[t.slices])


def test_small_image_is_reflect_padded_and_cropped_back() -> None:
    img = np.arange(3 * 5, dtype=np.float32).reshape(3, 5, 1)
    tiles = plan_tiles(3, 5, tile=8, overlap=2)
    assert tiles == [Tile(0, 0, 3, 5, 8)]
    batch = extract_tiles(img, tiles)
    assert batch.shape == (1, 8, 8, 1)
    np.testing.assert_array_equal(batch[0, :3, :5], img)
    np.testing.assert_array_equal(batch[0, 3, :5, 0], img[1, :, 0])  # reflection, not zeros
    blender = Blender(3, 5, channels=1, overlap=2)
    blender.add(tiles[0], np.moveaxis(batch[0], -1, 0))  # identity "model": H W C -> C H W
    np.testing.assert_array_equal(blender.result(), np.moveaxis(img, -1, 0))


def test_one_dimension_padded_other_tiled() -> None:
    img = np.random.default_rng(0).random((3, 20, 2)).astype(np.float32)
    tiles = plan_tiles(3, 20, tile=8, overlap=2)
    assert {t.h for t in tiles} == {3} and {t.w for t in tiles} == {8}
    blender = Blender(3, 20, channels=2, overlap=2)
    for t, patch in zip(tiles, extract_tiles(img, tiles)):
        blender.add(t, np.moveaxis(patch, -1, 0))
    np.testing.assert_allclose(blender.result(), np.moveaxis(img, -1, 0), rtol=1e-6, atol=1e-7)


def test_iter_tile_batches() -> None:
    img = np.zeros((10, 13, 3), np.uint8)
    tiles = plan_tiles(10, 13, tile=4, overlap=1)
    batches = list(iter_tile_batches(img, tiles, batch_size=5))
    assert [len(b[0]) for b in batches] == [5, 5, 2]
    assert [b[1].shape[0] for b in batches] == [5, 5, 2]
    assert [t for chunk, _ in batches for t in chunk] == tiles
    with pytest.raises(ValueError, match="batch_size"):
        next(iter_tile_batches(img, tiles, batch_size=0))


def test_exact_partition_blend_is_bit_exact() -> None:
    rng = np.random.default_rng(3)
    tiles = plan_tiles(12, 16, tile=4, overlap=0)
    assert (_coverage(12, 16, tiles) == 1).all()
    pieces = [rng.random((2, 4, 4)).astype(np.float32) for _ in tiles]
    blender = Blender(12, 16, channels=2)
    for t, p in zip(tiles, pieces):
        blender.add(t, p)
    expected = np.zeros((2, 12, 16), np.float32)
    for t, p in zip(tiles, pieces):
        expected[:, t.y : t.y + 4, t.x : t.x + 4] = p
    out = blender.result()
    assert out.dtype == np.float32 and out.shape == (2, 12, 16)
    assert out.tobytes() == expected.tobytes()


def test_overlapping_blend_of_constant_field() -> None:
    tiles = plan_tiles(37, 50, tile=16, overlap=6)
    blender = Blender(37, 50, channels=2, overlap=6)
    for t in tiles:
        blender.add(t, np.stack([np.full((16, 16), 0.3), np.full((16, 16), 0.7)]).astype(np.float32))
    out = blender.result()
    # float32 weighted mean of equal values: exact up to a couple of ulps
    np.testing.assert_allclose(out[0], 0.3, rtol=1e-6)
    np.testing.assert_allclose(out[1], 0.7, rtol=1e-6)


def test_overlap_blend_is_weighted_not_last_wins() -> None:
    # Two tiles of 8 over a width of 12 overlapping by 4: left says 0, right says 1. The blend must
    # ramp across the overlap (monotone, strictly between 0 and 1 inside it) and be exact outside it.
    tiles = plan_tiles(8, 12, tile=8, overlap=4)
    assert [t.x for t in tiles] == [0, 4]
    blender = Blender(8, 12, channels=1, overlap=4)
    blender.add(tiles[0], np.zeros((1, 8, 8), np.float32))
    blender.add(tiles[1], np.ones((1, 8, 8), np.float32))
    row = blender.result()[0, 0]
    assert (row[:4] == 0).all() and (row[8:] == 1).all()
    seam = row[4:8]
    assert (np.diff(seam) > 0).all() and (seam > 0).all() and (seam < 1).all()
    np.testing.assert_allclose(seam + seam[::-1], 1.0, rtol=1e-6)  # symmetric raised cosine


def test_blender_refusals() -> None:
    blender = Blender(8, 8, channels=2)
    with pytest.raises(ValueError, match=r"\(2, 4, 4\)"):
        blender.add(Tile(0, 0, 4, 4, 4), np.zeros((1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="outside"):
        blender.add(Tile(6, 0, 4, 4, 4), np.zeros((2, 4, 4), np.float32))
    blender.add(Tile(0, 0, 4, 4, 4), np.zeros((2, 4, 4), np.float32))
    with pytest.raises(ValueError, match="48 of 64 pixels"):
        blender.result()
