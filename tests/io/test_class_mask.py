"""read_class_mask: one class of a class-id label map as a binary support mask."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from icpd.io import ImageError, Raster, read_class_mask


def _labels() -> np.ndarray:
    a = np.zeros((6, 8), np.uint8)
    a[1:3, 2:5] = 3
    a[4:, 6:] = 12
    return a


def test_single_channel_grey_rgb_and_palette_labels(tmp_path):
    labels = _labels()
    cv2.imwrite(str(tmp_path / "l.png"), labels)
    cv2.imwrite(str(tmp_path / "l16.tif"), labels.astype(np.uint16) * 1)
    cv2.imwrite(str(tmp_path / "rgb.png"), np.repeat(labels[:, :, None], 3, axis=2))
    for name in ("l.png", "l16.tif", "rgb.png"):
        np.testing.assert_array_equal(read_class_mask(tmp_path / name, 3), (labels == 3).astype(np.uint8))
    pil = pytest.importorskip("PIL.Image")
    im = pil.fromarray(labels, mode="P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] * 64)
    im.save(tmp_path / "pal.png")
    np.testing.assert_array_equal(read_class_mask(tmp_path / "pal.png", 12), (labels == 12).astype(np.uint8))


def test_refusals_name_the_file_and_what_was_found(tmp_path):
    labels = _labels()
    cv2.imwrite(str(tmp_path / "l.png"), labels)
    with pytest.raises(ImageError, match=r"class id 7 does not occur; the ids present are \{0, 3, 12\}"):
        read_class_mask(tmp_path / "l.png", 7)
    colour = np.zeros((6, 8, 3), np.uint8)
    colour[1:3, 2:5] = (0, 0, 255)
    cv2.imwrite(str(tmp_path / "c.png"), colour)
    with pytest.raises(ImageError, match="colour-coded label map"):
        read_class_mask(tmp_path / "c.png", 3)
    like = Raster(pixels=np.zeros((5, 8, 3), np.uint8))
    with pytest.raises(ImageError, match=r"is 6x8 \(HxW\) but its image"):
        read_class_mask(tmp_path / "l.png", 3, like=like)
