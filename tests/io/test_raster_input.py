"""Issue 12, section 3: GeoTIFFs read by rasterio without OpenCV's TIFF warnings, JPEG EXIF
orientation applied as viewers do (and noted), the stretch note's wording."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from icpd.io import read_image
from icpd.io.exif import jpeg_orientation


def _geotiff(path: Path, pixels: np.ndarray) -> Path:
    rasterio = pytest.importorskip("rasterio", reason="rasterio (the icpd[geo] extra) is not installed")
    from rasterio.transform import from_origin

    with rasterio.open(path, "w", driver="GTiff", width=pixels.shape[1], height=pixels.shape[0], count=3,
                       dtype="uint8", crs="EPSG:32633", transform=from_origin(500000, 4e6, 0.5, 0.5)) as ds:
        ds.write(np.moveaxis(pixels, -1, 0))
    return path


def test_geotiff_is_read_without_opencv_tiff_warnings(tmp_path, capfd, monkeypatch):
    """Guards issue 12: every GeoTIFF read printed `TIFFReadDirectory: Unknown field with tag 33550`."""
    pixels = np.random.default_rng(0).integers(0, 256, (16, 20, 3), dtype=np.uint8)
    path = _geotiff(tmp_path / "scene.tif", pixels)
    capfd.readouterr()
    r = read_image(path)
    np.testing.assert_array_equal(r.pixels, pixels)
    assert r.geo is not None and r.notes == ()
    monkeypatch.setitem(sys.modules, "rasterio", None)  # without the geo extra: OpenCV, kept quiet
    np.testing.assert_array_equal(read_image(path).pixels, pixels)
    captured = capfd.readouterr()
    assert "TIFF" not in captured.err and "WARN" not in captured.err, captured.err


def _with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert an EXIF APP1 segment holding only the orientation tag right after the SOI marker."""
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1)
    tiff += struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    body = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_exif_orientation_is_applied_like_viewers(tmp_path, orientation):
    """Guards issue 12: EXIF orientation was ignored silently. OpenCV's imread (IMREAD_COLOR)
    applies it the way viewers do: the reference."""
    rgb = np.zeros((24, 40, 3), np.uint8)
    rgb[:8, :10] = (255, 0, 0)  # a red corner shows where the top-left went
    rgb[16:, 30:] = (0, 0, 255)
    _, enc = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
    path = tmp_path / "photo.jpg"
    path.write_bytes(_with_orientation(enc.tobytes(), orientation))
    assert jpeg_orientation(path.read_bytes()) == orientation
    r = read_image(path)
    np.testing.assert_array_equal(r.pixels, cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1])
    assert r.pixels.shape[:2] == ((24, 40) if orientation <= 4 else (40, 24))
    assert any(f"EXIF orientation {orientation}" in n for n in r.notes) == (orientation != 1)


def test_uint16_note_says_2nd_and_98th(tmp_path):
    """Guards issue 12: the note read "2th..98th percentile"."""
    path = tmp_path / "u16.png"
    cv2.imwrite(str(path), np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 7)
    (note,) = read_image(path).notes[1:]  # after the grayscale note
    assert "(2nd..98th percentile over all bands)" in note
