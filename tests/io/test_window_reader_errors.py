"""A GeoTIFF whose block fails to decode mid-read: WindowReader says what happened and where (the window,
GDAL's reason from rasterio's ``__cause__`` chain, that the file looks corrupt or truncated), the one
message both `icpd infer` runners record (tests/apps/infer/test_ray_runner.py pins it end to end)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from icpd.io.layout import ImageError
from icpd.io.windows import WindowReader, gdal_reason

rasterio = pytest.importorskip("rasterio")  # windowed reads are rasterio's (icpd.io.windows imports it lazily)


def _torn_tif(path: Path) -> Path:
    """200 x 300 deflate GeoTIFF (nodata 0), 256 px blocks; its second block (column 1, row 0) overwritten."""
    from rasterio.transform import from_origin

    pixels = np.random.default_rng(0).integers(0, 255, (3, 200, 300), dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", height=200, width=300, count=3, dtype="uint8", tiled=True,
                       compress="deflate", crs="EPSG:32633", transform=from_origin(0, 0, 1, 1), nodata=0) as ds:
        ds.write(pixels)
    with rasterio.open(path) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_1_0", "TIFF", bidx=1))
        size = int(ds.get_tag_item("BLOCK_SIZE_1_0", "TIFF", bidx=1))
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * size)  # not a deflate stream
    return path


def test_a_block_that_fails_to_decode_names_the_window_and_gdals_reason(tmp_path: Path):
    tif = _torn_tif(tmp_path / "torn.tif")
    with WindowReader(tif) as reader:
        assert reader.read(0, 0, 100, 200).shape == (100, 200, 3)  # the first block is whole
        with pytest.raises(ImageError) as err:
            reader.read(0, 172, 128, 128)
        with pytest.raises(ImageError, match=r"^image .*torn\.tif: reading rows 10\.\.19, columns 250\.\.299 failed"):
            reader.nodata_mask(10, 10, 250)  # the nodata read goes through the same window read
    text = str(err.value)
    assert text.startswith(f"image {tif}: reading rows 0..127, columns 172..299 failed (torn.tif, band 1: "
                           "IReadBlock failed at X offset 1, Y offset 0: "), text
    assert text.endswith("); the file looks corrupt or truncated: export or copy it again"), text
    assert "Read failed" not in text
    assert isinstance(err.value.__cause__, rasterio.errors.RasterioIOError)  # the traceback keeps rasterio's


def test_gdal_reason_walks_the_cause_chain_without_repeats():
    def chained(*texts: str) -> Exception:
        err: Exception | None = None
        for text in reversed(texts):
            new = RuntimeError(text)
            new.__cause__ = err
            err = new
        assert err is not None
        return err

    exc = chained("Read failed. See previous exception for details.", "f.tif, band 1: IReadBlock failed: "
                  "TIFFReadEncodedTile() failed.", "TIFFReadEncodedTile() failed.", "ZIPDecode: incorrect header")
    assert gdal_reason(exc) == "f.tif, band 1: IReadBlock failed: TIFFReadEncodedTile() failed.; ZIPDecode: " \
                               "incorrect header"
    assert gdal_reason(RuntimeError("no cause")) == "no cause"
