"""Issue 20 §4: label PNGs are palette PNGs. Their pixel values stay the class ids (0 background,
i + 1 for the i-th class, 255 nodata) and the palette holds the overlay's colours, so a viewer
shows the classes instead of a black picture."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from icpd.io import read_class_mask, write_label_png
from icpd.io.viz import OVERLAY_PALETTE


def _labels() -> np.ndarray:
    labels = np.zeros((40, 50), np.uint8)
    labels[5:15, 5:25] = 1
    labels[20:30, 10:40] = 2
    labels[35:, :] = 10
    labels[0, 0] = 255  # nodata
    return labels


def test_palette_png_keeps_values_and_carries_the_overlay_colours(tmp_path: Path):
    labels = _labels()
    written = write_label_png(tmp_path / "s_labels.png", labels, palette=OVERLAY_PALETTE)
    assert written == [tmp_path / "s_labels.png"]
    with Image.open(written[0]) as im:
        assert im.mode == "P"
        np.testing.assert_array_equal(np.asarray(im), labels)  # the values, unchanged
        palette = np.asarray(im.getpalette()[:3 * 256], np.uint8).reshape(-1, 3)
    np.testing.assert_array_equal(palette, OVERLAY_PALETTE)
    assert tuple(palette[0]) == (0, 0, 0)  # background black
    # OpenCV expands a palette to its colours (the README says so): what a viewer shows
    np.testing.assert_array_equal(cv2.imread(str(written[0]), cv2.IMREAD_UNCHANGED), OVERLAY_PALETTE[labels][..., ::-1])
    # icpd's own readers take the ids: the labels can be a later --label
    np.testing.assert_array_equal(read_class_mask(written[0], 2), (labels == 2).astype(np.uint8))


def test_palette_png_bytes_are_deterministic_and_refusals(tmp_path: Path):
    a = write_label_png(tmp_path / "a.png", _labels(), palette=OVERLAY_PALETTE)[0].read_bytes()
    b = write_label_png(tmp_path / "b.png", _labels(), palette=OVERLAY_PALETTE)[0].read_bytes()
    assert a == b
    with pytest.raises(ValueError, match="label 255 has no colour in a palette of 3; pass one with at least 256 rows"):
        write_label_png(tmp_path / "c.png", _labels(), palette=OVERLAY_PALETTE[:3])
    assert not (tmp_path / "c.png").exists()


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _filtered_palette_png(indices: np.ndarray, palette: np.ndarray) -> bytes:
    """A palette PNG whose rows use filters 0, 1, 2, 3, 4 in turn (encoders pick them per row)."""
    import struct
    import zlib

    h, w = indices.shape
    rows, prev = [], np.zeros(w, np.int64)
    for y in range(h):
        kind, cur = y % 5, indices[y].astype(np.int64)
        left = np.concatenate([[0], cur[:-1]])
        upleft = np.concatenate([[0], prev[:-1]])
        pred = {0: np.zeros(w, np.int64), 1: left, 2: prev, 3: (left + prev) // 2,
                4: np.array([_paeth(int(a), int(b), int(c)) for a, b, c in zip(left, prev, upleft)])}[kind]
        rows.append(bytes([kind]) + ((cur - pred) % 256).astype(np.uint8).tobytes())
        prev = cur

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
            + chunk(b"PLTE", palette.tobytes()) + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))


def test_palette_indices_read_without_pillow(tmp_path: Path):
    """A runtime-only install has no Pillow: icpd reads palette PNGs' indices itself (every row filter),
    so an infer label PNG still works as a --label there."""
    from icpd.io.labels import read_palette_png

    labels = np.random.default_rng(0).integers(0, 12, (23, 31), dtype=np.uint8)
    path = tmp_path / "f.png"
    path.write_bytes(_filtered_palette_png(labels, OVERLAY_PALETTE))
    with Image.open(path) as im:  # a valid PNG: Pillow agrees
        np.testing.assert_array_equal(np.asarray(im), labels)
    np.testing.assert_array_equal(read_palette_png(path), labels)
    written = write_label_png(tmp_path / "w.png", labels, palette=OVERLAY_PALETTE)[0]
    np.testing.assert_array_equal(read_palette_png(written), labels)
    cv2.imwrite(str(tmp_path / "g.png"), labels)
    with pytest.raises(ValueError, match="colour type 0, 8-bit"):
        read_palette_png(tmp_path / "g.png")


def test_read_class_mask_of_a_palette_label_without_pillow(tmp_path: Path):
    import subprocess
    import sys

    labels = _labels()
    path = write_label_png(tmp_path / "s_labels.png", labels, palette=OVERLAY_PALETTE)[0]
    code = ("import sys; sys.modules['PIL'] = None\n"  # as on the runtime-only install
            "from icpd.io import read_class_mask\n"
            f"print(int(read_class_mask({str(path)!r}, 2).sum()))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == int((labels == 2).sum())
