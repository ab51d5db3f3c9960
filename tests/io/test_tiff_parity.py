"""Issue 20 section 2: a multi-band TIFF reads the same with and without rasterio, whole or by
windows, and every refusal states the file's real size, band count and pixel type.

Without rasterio (the runtime-only install) a 4-band uint16 GeoTIFF was read as band 1 replicated
to grey (infer exited 0 with wrong masks) and ``--bands 3,2,1`` was refused as "a file with 1
band(s)"; with rasterio the window reader refused it as "1x1 (HxW), 4 band(s), int64". Each
file below is read three ways: :func:`read_image` with rasterio, :func:`read_image` with rasterio
hidden (``sys.modules["rasterio"] = None``, as on an install without the geo extra), and
:class:`WindowReader` (what ``icpd infer`` uses for TIFFs when rasterio is installed); the three
must give the same pixels and notes (bar the note that georeferencing was not kept), or the same
refusal.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

from icpd.io import GEO_EXTRA_HINT, ImageError, read_image
from icpd.io.decoding import NO_GEO_NOTE

rasterio = pytest.importorskip("rasterio", reason="rasterio (the icpd[geo] extra) is not installed")
tifffile = pytest.importorskip("tifffile", reason="tifffile (a runtime dependency) is not installed")

from rasterio.transform import from_origin

from icpd.io.windows import WindowReader

H, W = 300, 400  # the issue's scene size
TRANSFORM = from_origin(500000.0, 4600000.0, 10.0, 10.0)


def _pixels(n: int, dtype: str, seed: int = 0) -> np.ndarray:
    """(n, H, W) bands in file order: distinct per band, so a wrong band shows."""
    rng = np.random.default_rng(seed)
    if dtype == "float32":
        return rng.random((n, H, W), dtype=np.float32)
    top = 255 if dtype == "uint8" else 4000  # 12-bit counts, as many uint16 products hold
    return (rng.integers(0, top // 2, (n, H, W)) + np.arange(n)[:, None, None] * (top // (2 * n))).astype(dtype)


def _geotiff(path: Path, data: np.ndarray, **options: object) -> Path:
    with rasterio.open(path, "w", driver="GTiff", height=H, width=W, count=data.shape[0], dtype=data.dtype,
                       crs="EPSG:32633", transform=TRANSFORM, **options) as ds:
        ds.write(data)
    return path


def _read_three_ways(path: Path, bands: tuple[int, int, int] | None, monkeypatch: pytest.MonkeyPatch):
    """[(pixels, notes) or the refusal's message] read with rasterio, without it, and by windows."""
    out = []
    for way in ("rasterio", "without", "windows"):
        with monkeypatch.context() as m:
            if way == "without":
                m.setitem(sys.modules, "rasterio", None)  # import rasterio -> ImportError
            try:
                if way == "windows":
                    with WindowReader(path, bands) as r:
                        out.append((r.read(0, 0, r.height, r.width), list(r.notes)))
                else:
                    raster = read_image(path, bands)
                    out.append((raster.pixels, list(raster.notes)))
            except ImageError as exc:
                out.append(str(exc))
    return out


def _expected_uint16_limits(used: np.ndarray) -> tuple[int, int]:
    """The stretch limits by the documented rule: 2nd and 98th percentiles (inverted CDF) over the used bands."""
    lo, hi = np.percentile(used, [2, 98], method="inverted_cdf")
    return int(lo), int(hi)


CASES = list(itertools.product((3, 4, 5), ("uint8", "uint16", "float32"), (None, (3, 2, 1))))


@pytest.mark.parametrize(("n", "dtype", "bands"), CASES)
@pytest.mark.parametrize("layout", ["striped-pixel", "tiled-band"])
def test_multiband_geotiff_reads_the_same_with_and_without_rasterio(tmp_path, monkeypatch, n, dtype, bands, layout):
    """Guards issue 20: the same pixels, notes or refusal with rasterio, without it, and by windows."""
    options = {"interleave": "pixel"} if layout == "striped-pixel" else {
        "interleave": "band", "tiled": True, "blockxsize": 128, "blockysize": 128, "compress": "deflate"}
    data = _pixels(n, dtype)
    path = _geotiff(tmp_path / "scene.tif", data, **options)
    with_rio, without, windows = _read_three_ways(path, bands, monkeypatch)
    gdal_alpha = " (band 4 declared alpha)" if (n, dtype) == (4, "uint8") else ""  # GDAL's default, see below
    describe = f"{H}x{W} (HxW), {n} band(s){gdal_alpha}, {dtype}"
    if n != 3 and bands is None:  # 4 or 5 bands: which are R, G, B is ambiguous
        assert isinstance(with_rio, str), with_rio
        assert with_rio == without == windows
        assert f"image {path}: {describe}: found {n} bands" in with_rio and "--bands R,G,B" in with_rio
        return
    for got in (with_rio, without, windows):
        assert not isinstance(got, str), got
    (pixels, notes), (pixels_no_rio, notes_no_rio), (pixels_win, notes_win) = with_rio, without, windows
    np.testing.assert_array_equal(pixels_no_rio, pixels)
    np.testing.assert_array_equal(pixels_win, pixels)
    assert notes_no_rio == [NO_GEO_NOTE, *notes] and notes_win == notes
    used = np.moveaxis(data, 0, -1)[:, :, [b - 1 for b in (bands or (1, 2, 3))]]
    band_notes = [] if bands is None else [f"used bands {bands} of {n} (1-based, file order) as R, G, B"]
    if dtype == "uint8":
        np.testing.assert_array_equal(pixels, used)
        assert notes == band_notes
    elif dtype == "uint16":
        lo, hi = _expected_uint16_limits(used)
        assert notes == [*band_notes, (f"uint16: stretched [{lo}, {hi}] (2nd..98th percentile over all bands) "
                                      "to [0, 255], clipped")]
        expected = np.clip(np.round((used.astype(np.float64) - lo) * (255.0 / (hi - lo))), 0, 255)
        np.testing.assert_array_equal(pixels, expected.astype(np.uint8))
    else:
        np.testing.assert_array_equal(pixels, np.round(used * np.float32(255.0)).astype(np.uint8))
        assert notes == [*band_notes, "float32 in [0, 1]: scaled by 255 and rounded to uint8"]


def test_the_issues_scene_refused_with_its_real_size_and_dtype_then_read_with_bands(tmp_path, monkeypatch):
    """Guards issue 20: the window reader said '1x1 (HxW), 4 band(s), int64' for a 300x400 uint16 file;
    without rasterio --bands 3,2,1 was refused as 'a file with 1 band(s)'."""
    path = _geotiff(tmp_path / "rgbn.tif", _pixels(4, "uint16"))
    refusals = _read_three_ways(path, None, monkeypatch)
    assert all("300x400 (HxW), 4 band(s), uint16" in r and "1x1" not in r for r in refusals), refusals
    for pixels, notes in _read_three_ways(path, (3, 2, 1), monkeypatch):
        assert pixels.shape == (H, W, 3) and "used bands (3, 2, 1) of 4 (1-based, file order) as R, G, B" in notes
    bad = _read_three_ways(path, (1, 2, 5), monkeypatch)
    assert bad[0] == bad[1] == bad[2], bad
    assert "300x400 (HxW), 4 band(s), uint16; bands=(1, 2, 5) is not valid for a file with 4 band(s)" in bad[0]


def test_windows_equal_slices_of_the_whole_read_without_rasterio(tmp_path, monkeypatch):
    """A window of a tiled uint16 scene equals the same slice of the whole scene read without rasterio."""
    path = _geotiff(tmp_path / "t.tif", _pixels(4, "uint16", seed=3), tiled=True, blockxsize=64, blockysize=64)
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "rasterio", None)
        whole = read_image(path, (4, 3, 2)).pixels
    with WindowReader(path, (4, 3, 2)) as r:
        for y, x, h, w in [(0, 0, 64, 64), (37, 101, 150, 199), (H - 1, W - 7, 1, 7)]:
            np.testing.assert_array_equal(r.read(y, x, h, w), whole[y:y + h, x:x + w])


def test_float_out_of_range_is_refused_before_the_first_window(tmp_path, monkeypatch):
    """A value above 1 in the last rows: the window reader refused only when it reached that window
    (after writing the rest); now it refuses when opened, in the words of the whole read."""
    data = _pixels(3, "float32")
    data[1, -1, -1] = 2.5
    path = _geotiff(tmp_path / "f.tif", data)
    refusals = _read_three_ways(path, None, monkeypatch)
    assert refusals[0] == refusals[1] == refusals[2], refusals
    assert f"{H}x{W} (HxW), 3 band(s), float32; the float pixels are in [" in refusals[0] and ", 2.5]" in refusals[0]


def test_declared_alpha_is_still_ambiguous_and_said(tmp_path, monkeypatch):
    """GDAL declares band 4 of every 4-band uint8 GeoTIFF alpha (RGB+NIR included): the declaration
    is said in the refusal, not trusted; --bands 1,2,3 reads the colour bands alike three ways."""
    data = _pixels(4, "uint8", seed=1)
    path = _geotiff(tmp_path / "rgbn8.tif", data)
    assert tifffile.TiffFile(path).pages[0].extrasamples == (2,)  # unassociated alpha, though nobody asked
    refusals = _read_three_ways(path, None, monkeypatch)
    assert refusals[0] == refusals[1] == refusals[2], refusals
    assert "300x400 (HxW), 4 band(s) (band 4 declared alpha), uint8" in refusals[0]
    assert "Band 4 is declared alpha, which GDAL does by default" in refusals[0]
    for pixels, _ in _read_three_ways(path, (1, 2, 3), monkeypatch):
        np.testing.assert_array_equal(pixels, np.moveaxis(data[:3], 0, -1))


def test_palette_tiff_is_read_as_its_colours_the_same_way(tmp_path, monkeypatch):
    """A palette TIFF was read as grey index values with rasterio (and as colours without it)."""
    idx = np.random.default_rng(2).integers(0, 4, (H, W)).astype(np.uint8)
    colours = np.array([[255, 0, 0], [0, 128, 0], [0, 0, 255], [9, 200, 77]], np.uint8)
    cmap = np.zeros((3, 256), np.uint16)
    cmap[:, :4] = colours.T.astype(np.uint16) * 257
    path = tmp_path / "pal.tif"
    tifffile.imwrite(path, idx, photometric="palette", colormap=cmap)
    for pixels, notes in _read_three_ways(path, None, monkeypatch):
        np.testing.assert_array_equal(pixels, colours[idx])
        assert notes == ["palette TIFF: index colours looked up in its colour table (3 bands)"]


def test_lzw_without_rasterio_exact_or_refused_naming_the_extra(tmp_path, monkeypatch):
    """tifffile cannot decode LZW on its own: OpenCV reads it only where it is exact (3 RGB uint8
    bands); a 4-band LZW file is refused naming the geo extra, never read as one band."""
    rgb = _geotiff(tmp_path / "rgb.tif", _pixels(3, "uint8"), compress="lzw", photometric="rgb")
    with_rio, without, _ = _read_three_ways(rgb, None, monkeypatch)
    np.testing.assert_array_equal(without[0], with_rio[0])
    nir = _geotiff(tmp_path / "rgbn.tif", _pixels(4, "uint16"), compress="lzw")
    with_rio, without, _ = _read_three_ways(nir, (3, 2, 1), monkeypatch)
    assert with_rio[0].shape == (H, W, 3)
    assert isinstance(without, str), without
    assert f"image {nir}: 300x400 (HxW), 4 band(s), uint16, a TIFF compressed with LZW" in without
    assert GEO_EXTRA_HINT in without and "COMPRESS=DEFLATE" in without


def test_palette_tiff_label_map_keeps_its_indices(tmp_path, monkeypatch):
    """A palette TIFF label map: its indices are the class ids, with and without rasterio (only a
    scene is read as colours)."""
    from icpd.io import read_class_mask

    idx = np.zeros((H, W), np.uint8)
    idx[10:50, 20:90] = 3
    cmap = np.zeros((3, 256), np.uint16)
    cmap[0, 3] = 65535  # class 3 drawn red
    path = tmp_path / "labels.tif"
    tifffile.imwrite(path, idx, photometric="palette", colormap=cmap)
    masks = []
    for hide in (False, True):
        with monkeypatch.context() as m:
            if hide:
                m.setitem(sys.modules, "rasterio", None)
            masks.append(read_class_mask(path, 3))
    for mask in masks:
        np.testing.assert_array_equal(mask, (idx == 3).astype(np.uint8))


def test_cmyk_tiff_converted_alike_or_refused_alike(tmp_path, monkeypatch):
    """GDAL turns an 8-bit CMYK TIFF into RGB + alpha; without rasterio it was 4 raw ink bands.
    Now every way gives libtiff's RGB, R = (255 - K) * (255 - C) // 255, with a note; 16-bit CMYK
    (which GDAL leaves as inks) is refused alike."""
    cmyk = np.random.default_rng(4).integers(0, 256, (H, W, 4)).astype(np.uint8)
    path = tmp_path / "print.tif"
    tifffile.imwrite(path, cmyk, photometric="separated")
    k = 255 - cmyk[:, :, 3:].astype(int)
    expected = (k * (255 - cmyk[:, :, :3].astype(int)) // 255).astype(np.uint8)
    for pixels, notes in _read_three_ways(path, None, monkeypatch):
        np.testing.assert_array_equal(pixels, expected)
        assert notes == ["CMYK TIFF: converted from CMYK to RGB"]
    tifffile.imwrite(path, cmyk.astype(np.uint16) * 257, photometric="separated")
    refusals = _read_three_ways(path, None, monkeypatch)
    assert refusals[0] == refusals[1] == refusals[2], refusals
    assert "300x400 (HxW), 4 band(s) (CMYK), uint16: a 16-bit CMYK TIFF" in refusals[0]


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_min_is_white_reads_inverted_alike(tmp_path, monkeypatch, dtype):
    """GDAL shows a min-is-white TIFF inverted (through a grey colour table); without rasterio it
    was read as stored (black for white). Now every way gives GDAL's table, with a note."""
    grey = np.random.default_rng(6).integers(0, 256 if dtype == "uint8" else 65536, (H, W)).astype(dtype)
    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, grey, photometric="miniswhite")
    top = np.iinfo(dtype).max
    expected = ((top - grey.astype(np.int64)) * 255 // top).astype(np.uint8)  # GDAL's table, entry for entry
    for pixels, notes in _read_three_ways(path, None, monkeypatch):
        np.testing.assert_array_equal(pixels, np.repeat(expected[:, :, None], 3, axis=2))
        assert notes == ["min-is-white TIFF: grey values inverted (0 is white), as GDAL and viewers show it"]


def test_float_predictor_without_imagecodecs_is_refused_with_the_cause(tmp_path, monkeypatch):
    """GDAL's PREDICTOR=3 (floating point) needs imagecodecs in tifffile: a 4-band file is refused
    naming the predictor and the option that avoids it; 1 or 3 bands are read exactly by OpenCV."""
    data = _pixels(4, "float32")
    path = _geotiff(tmp_path / "refl.tif", data, compress="deflate", predictor=3)
    with_rio, without, _ = _read_three_ways(path, (1, 2, 3), monkeypatch)
    assert with_rio[0].shape == (H, W, 3)
    assert "300x400 (HxW), 4 band(s), float32, a TIFF compressed with ADOBE_DEFLATE and the floating-point " \
           "predictor, which icpd reads without rasterio only for 1-band or 3-band RGB files. Install the geo extra " \
           f"({GEO_EXTRA_HINT}) or re-save it with DEFLATE: " \
           "gdal_translate -co COMPRESS=DEFLATE -co PREDICTOR=1" in without
    three = _geotiff(tmp_path / "rgb.tif", data[:3], compress="deflate", predictor=3)
    with_rio, without, _ = _read_three_ways(three, None, monkeypatch)
    np.testing.assert_array_equal(without[0], with_rio[0])
    assert without[1] == [NO_GEO_NOTE, *with_rio[1]]


def test_palette_scene_nodata_is_read_from_its_index_band(tmp_path):
    """The nodata mask of a palette scene compares its one index band (its colours are 3 bands the
    file does not have: reading band 2 of it failed)."""
    idx = np.random.default_rng(8).integers(0, 3, (H, W)).astype(np.uint8)
    path = tmp_path / "landcover.tif"
    with rasterio.open(path, "w", driver="GTiff", height=H, width=W, count=1, dtype="uint8", crs="EPSG:32633",
                       transform=TRANSFORM, nodata=0) as ds:
        ds.write(idx, 1)
        ds.write_colormap(1, {0: (0, 0, 0, 255), 1: (10, 200, 10, 255), 2: (200, 10, 10, 255)})
    with WindowReader(path) as r:
        assert r.notes == ("palette TIFF: index colours looked up in its colour table (3 bands)",)
        np.testing.assert_array_equal(r.nodata_mask(5, 40), idx[5:45] == 0)
