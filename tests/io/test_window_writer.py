"""WindowWriter: GeoTIFFs written window by window (strips or blocks, in any order) appear whole or
not at all (atomic), tiled, with their georeferencing, colour map and band names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio", reason="rasterio (the icpd[geo] extra) is not installed")

from icpd.io.raster import GeoInfo
from icpd.io.windows import WindowWriter

GEO = GeoInfo(crs_wkt=rasterio.crs.CRS.from_epsg(32633).to_wkt(), transform=(0.5, 0.0, 500000.0, 0.0, -0.5, 4600000.0))


def _labels(h: int = 300, w: int = 280) -> np.ndarray:
    return (np.arange(h * w, dtype=np.int64).reshape(h, w) % 3).astype(np.uint8)


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_committed_strips_read_back_with_geo_colours_and_names(tmp_path):
    data, path = _labels(), tmp_path / "labels.tif"
    with WindowWriter(path, *data.shape, 1, "uint8", geo=GEO, nodata=255,
                      colormap={0: (0, 0, 0), 1: (255, 0, 255), 2: (255, 220, 0)},
                      descriptions=["labels"]) as writer:
        for row in range(0, data.shape[0], 64):
            writer.write(row, data[row:row + 64])
    with rasterio.open(path) as ds:
        assert np.array_equal(ds.read(1), data)
        assert ds.crs.to_epsg() == 32633 and tuple(ds.transform)[:6] == GEO.transform
        assert ds.nodata == 255 and ds.colormap(1)[1][:3] == (255, 0, 255) and ds.descriptions == ("labels",)
        assert ds.profile["tiled"]
    assert _leftovers(tmp_path, {"labels.tif"}) == []


def test_a_failure_midway_leaves_the_previous_file_and_no_temporary(tmp_path):
    path = tmp_path / "labels.tif"
    path.write_bytes(b"the previous run's labels")
    data = _labels()
    with (pytest.raises(RuntimeError, match="decoder died"),
          WindowWriter(path, *data.shape, 1, "uint8", geo=GEO) as writer):
        writer.write(0, data[:64])
        raise RuntimeError("decoder died")
    assert path.read_bytes() == b"the previous run's labels"
    assert _leftovers(tmp_path, {"labels.tif"}) == []

    fresh = tmp_path / "new.tif"  # no previous file: none appears
    writer = WindowWriter(fresh, *data.shape, 1, "uint8")
    writer.write(0, data[:64])
    writer.abort()
    assert not fresh.exists() and _leftovers(tmp_path, {"labels.tif"}) == []


def test_blocks_written_out_of_order_read_back_equal(tmp_path):
    """The blender hands out 256 px blocks column by column on wide scenes: any order, edges partial."""
    data, path = _labels(600, 530), tmp_path / "blocks.tif"
    with WindowWriter(path, *data.shape, 1, "uint8", geo=GEO) as writer:
        for col in (512, 256, 0):  # right to left, bottom to top, the last row and column partial
            for row in (512, 256, 0):
                writer.write(row, data[row:row + 256, col:col + 256], col)
    with rasterio.open(path) as ds:
        assert np.array_equal(ds.read(1), data) and ds.block_shapes[0] == (256, 256)


def test_a_block_that_does_not_fit_is_refused_naming_the_file(tmp_path):
    data = _labels()
    writer = WindowWriter(tmp_path / "x.tif", *data.shape, 1, "uint8")
    try:
        with pytest.raises(ValueError, match=r"x\.tif: block \(1, 64, 100\) at row 0, column 200 does not fit"):
            writer.write(0, data[:64, :100], 200)  # past the right edge (280 columns)
        with pytest.raises(ValueError, match="does not fit"):
            writer.write(280, data[:64])  # past the last row
        with pytest.raises(ValueError, match="column -1 does not fit"):
            writer.write(0, data[:64, :10], -1)
    finally:
        writer.abort()
    assert _leftovers(tmp_path, set()) == []
