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
from icpd.runtime.viz import OVERLAY_PALETTE


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
