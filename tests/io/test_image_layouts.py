"""Issue 20 section 2: every decoding path says what it did and every refusal states the file's
real size (HxW), band count and pixel type, not what a decoder or the band selection made of it.

PNGs are written byte by byte here (:func:`_png`), so each colour type and bit depth is what the
test says, whatever an encoder would choose.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from icpd.data.imageio import DatasetError
from icpd.data.imageio import read_image as read_dataset_image
from icpd.io import ImageError, read_image

tifffile = pytest.importorskip("tifffile", reason="tifffile (a runtime dependency) is not installed")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(path: Path, rows: np.ndarray, colour: int, depth: int, *extra: bytes) -> Path:
    """A PNG of colour type ``colour`` and bit depth 8 or 16 holding ``rows`` (H, W) or (H, W, C)."""
    h, w = rows.shape[:2]
    raw = b"".join(b"\x00" + rows[y].astype(">u2" if depth == 16 else np.uint8).tobytes() for y in range(h))
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + ihdr + b"".join(extra) + _chunk(b"IDAT", zlib.compress(raw))
                     + _chunk(b"IEND", b""))
    return path


def _refusal(path: Path, bands: tuple[int, ...] | None = None) -> str:
    with pytest.raises(ImageError) as err:
        read_image(path, bands)  # type: ignore[arg-type]
    return str(err.value)


RNG = np.random.default_rng(7)


@pytest.mark.parametrize("depth", [8, 16])
def test_grayscale_alpha_png_is_two_bands(tmp_path, depth):
    """OpenCV makes grey+alpha into 4 bands: --bands 1,2,3 was accepted (grey, grey, grey) and the
    note said 'RGBA PNG'. The file has 2 bands: grey replicated, alpha dropped, both said."""
    ga = RNG.integers(0, 2**depth, (6, 8, 2))
    path = _png(tmp_path / "ga.png", ga, colour=4, depth=depth)
    r = read_image(path)
    assert r.notes[0] == ("grayscale+alpha PNG: alpha band dropped (transparent pixels keep their grey values), "
                          "grey replicated to R, G, B")
    if depth == 8:
        np.testing.assert_array_equal(r.pixels, np.repeat(ga[:, :, :1], 3, axis=2))
    msg = _refusal(path, (1, 2, 3))
    assert msg.startswith(f"image {path}: 6x8 (HxW), 2 band(s) (grayscale+alpha), uint{depth}; bands=(1, 2, 3) is "
                          "not valid for a file with 2 band(s). Pass three 1-based band numbers between 1 and 2"), msg


def test_palette_png_is_said_and_described(tmp_path):
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [9, 9, 9]], np.uint8)
    idx = RNG.integers(0, 4, (6, 8))
    path = _png(tmp_path / "p.png", idx, 3, 8, _chunk(b"PLTE", palette.tobytes()))
    r = read_image(path)
    np.testing.assert_array_equal(r.pixels, palette[idx])
    assert r.notes == ("palette PNG: index colours looked up in its palette (3 bands)",)
    assert "6x8 (HxW), 1 band(s) (palette, 8-bit indices), uint8, read as 3 bands (RGB); bands=(1, 2, 4)" in \
        _refusal(path, (1, 2, 4))
    alpha = _png(tmp_path / "pt.png", idx, 3, 8, _chunk(b"PLTE", palette.tobytes()), _chunk(b"tRNS", b"\x00"))
    assert read_image(alpha).notes == ("palette PNG: index colours looked up in its palette (4 bands)",
                                       "RGBA PNG: alpha channel dropped (transparent pixels keep their colour values)")


def test_sixteen_bit_png_refusal_names_uint16(tmp_path):
    path = _png(tmp_path / "rgb16.png", RNG.integers(0, 65536, (5, 7, 3)), 2, 16)
    assert "5x7 (HxW), 3 band(s), uint16; bands=(1, 2, 4)" in _refusal(path, (1, 2, 4))
    key = _png(tmp_path / "key.png", RNG.integers(0, 256, (5, 7, 3)), 2, 8,
               _chunk(b"tRNS", b"\x00\x01\x00\x02\x00\x03"))
    assert "5x7 (HxW), 3 band(s) (transparent colour key (tRNS)), uint8, read as 4 bands (RGBA)" in \
        _refusal(key, (1, 2, 5))


def test_float_refusal_describes_the_file_not_the_used_bands(tmp_path):
    """The float range was checked after the band selection and described the 3 used bands."""
    data = RNG.random((9, 11, 5), dtype=np.float32)
    data[0, 0, 1] = 3.0
    path = tmp_path / "ms.tif"
    tifffile.imwrite(path, data, photometric="minisblack", planarconfig="contig")
    msg = _refusal(path, (1, 2, 3))
    assert msg.startswith(f"image {path}: 9x11 (HxW), 5 band(s), float32; the float pixels are in ["), msg
    assert ", 3]; icpd only accepts float imagery in [0, 1]" in msg
    nan = data.copy()
    nan[1, 1, 4] = np.nan
    tifffile.imwrite(path, np.moveaxis(nan.clip(0, 1), -1, 0), photometric="minisblack", planarconfig="separate")
    assert "9x11 (HxW), 5 band(s), float32; the float pixels contain 1 NaN/inf value(s)" in _refusal(path, (5, 4, 3))


def test_unsupported_dtype_refusal_describes_the_file(tmp_path):
    path = tmp_path / "i16.tif"
    tifffile.imwrite(path, RNG.integers(-5, 5, (4, 6, 3)).astype(np.int16), photometric="rgb")
    assert _refusal(path) == (f"image {path}: 4x6 (HxW), 3 band(s), int16; unsupported pixel type int16. "
                              "icpd reads uint8, uint16 and float in [0, 1]. "
                              "Convert it, e.g. gdal_translate -ot Byte -scale.")


def test_cmyk_jpeg_is_converted_and_said(tmp_path):
    """A CMYK JPEG was accepted without a note. Pillow writes it (Adobe, inverted) and converts it
    back: OpenCV's RGB must equal Pillow's within 2 levels (the two libjpeg builds round differently)."""
    image = pytest.importorskip("PIL.Image", reason="Pillow is not installed")
    rgb = cv2.GaussianBlur(RNG.integers(0, 256, (32, 48, 3), np.uint8), (5, 5), 0)  # a photo, not noise
    path = tmp_path / "print.jpg"
    image.fromarray(rgb).convert("CMYK").save(path, quality=95)
    r = read_image(path)
    assert r.notes == ("CMYK JPEG: converted from CMYK to RGB",)
    with image.open(path) as im:
        assert im.mode == "CMYK"
        pillow = np.asarray(im.convert("RGB")).astype(int)
    assert np.abs(r.pixels.astype(int) - pillow).max() <= 2
    assert "32x48 (HxW), 4 band(s) (CMYK), uint8, read as 3 bands (RGB); bands=(1, 2, 4)" in _refusal(path, (1, 2, 4))


def test_exif_note_gives_both_sizes(tmp_path):
    from tests.io.test_raster_input import _with_orientation

    _, enc = cv2.imencode(".jpg", np.zeros((24, 40, 3), np.uint8))
    path = tmp_path / "phone.jpg"
    path.write_bytes(_with_orientation(enc.tobytes(), 6))
    assert read_image(path).notes == (("EXIF orientation 6: rotated 90 degrees clockwise to show it upright, as image "
                                      "viewers do (stored 24x40, now 40x24 HxW)"),)


def test_tiff_decoding_warnings_stay_quiet(tmp_path):
    """tifffile logs a broken tag of a readable file to stderr ("invalid value offset"); a user sees
    only our notes."""
    path = tmp_path / "odd.tif"
    tifffile.imwrite(path, np.zeros((4, 4), np.uint8), extratags=[(65000, "s", 0, "x" * 30, False)])
    entry = tifffile.TiffFile(path).pages[0].tags[65000].offset  # the tag's IFD entry; its value offset at +8
    data = bytearray(path.read_bytes())
    data[entry + 8:entry + 12] = struct.pack("<I", 0x7FFFFF00)  # points past the end of the file
    path.write_bytes(bytes(data))
    code = ("import sys; sys.modules['rasterio'] = None\nfrom icpd.io import read_image\n"
            f"print(read_image({str(path)!r}).notes)")  # a process of its own: pytest captures log records
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert (done.stdout, done.stderr) == ("('grayscale: replicated to R, G, B',)\n", "")


def test_dataset_reader_message_is_not_doubled(tmp_path):
    """icpd.data.read_image prefixed 'image file' to a message starting 'image PATH'."""
    path = tmp_path / "rgbn.tif"
    tifffile.imwrite(path, np.zeros((4, 6, 4), np.uint8), photometric="minisblack", planarconfig="contig")
    with pytest.raises(DatasetError) as err:
        read_dataset_image(path)
    assert str(err.value).startswith(f"image {path}: 4x6 (HxW), 4 band(s), uint8: found 4 bands"), str(err.value)
    assert str(err.value).endswith("; check the data set root and the list files")
