"""Label colouring, overlays and heatmaps."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from icpd.runtime.viz import PALETTE, colorize_labels, heatmap, overlay, voc_palette


def test_palette_fixed_and_distinct() -> None:
    assert PALETTE.shape == (256, 3) and PALETTE.dtype == np.uint8
    assert tuple(PALETTE[0]) == (0, 0, 0)
    assert [tuple(c) for c in PALETTE[1:4]] == [(128, 0, 0), (0, 128, 0), (128, 128, 0)]  # VOC
    assert len({tuple(c) for c in PALETTE}) == 256
    np.testing.assert_array_equal(voc_palette(21), PALETTE[:21])


def test_colorize_shapes_and_background_black() -> None:
    labels = np.array([[0, 1], [2, 0]], np.int64)
    rgb = colorize_labels(labels)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert (rgb[labels == 0] == 0).all()
    assert tuple(rgb[0, 1]) == tuple(PALETTE[1]) and tuple(rgb[1, 0]) == tuple(PALETTE[2])
    custom = np.array([[0, 0, 0], [1, 2, 3]], np.uint8)
    assert tuple(colorize_labels(labels == 1, custom)[0, 1]) == (1, 2, 3)


def test_colorize_refuses_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        colorize_labels(np.array([[-1, 1]]))
    with pytest.raises(ValueError, match="2 colours"):
        colorize_labels(np.array([[0, 2]]), np.zeros((2, 3), np.uint8))


def test_overlay_alpha() -> None:
    image = np.full((2, 3, 3), 100, np.uint8)
    labels = np.array([[0, 1, 1], [0, 0, 2]])
    half = overlay(image, labels, alpha=0.5)
    assert half.shape == image.shape and half.dtype == np.uint8
    assert (half[labels == 0] == 100).all()  # background untouched
    assert tuple(half[0, 1]) == (114, 50, 50)  # round(0.5 * 100 + 0.5 * (128, 0, 0))
    np.testing.assert_array_equal(overlay(image, labels, alpha=0.0), image)
    full = overlay(image, labels, alpha=1.0)
    np.testing.assert_array_equal(full[labels > 0], colorize_labels(labels)[labels > 0])
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, labels, alpha=1.5)
    with pytest.raises(ValueError, match="shape"):
        overlay(image, labels[:, :2])


def test_heatmap_rgb_turbo() -> None:
    prob = np.array([[0.0, 0.5, 1.0]], np.float32)
    rgb = heatmap(prob)
    assert rgb.shape == (1, 3, 3) and rgb.dtype == np.uint8
    expected_bgr = cv2.applyColorMap(np.array([[0, 128, 255]], np.uint8), cv2.COLORMAP_TURBO)
    np.testing.assert_array_equal(rgb, expected_bgr[:, :, ::-1])
    assert rgb[0, 0, 2] > rgb[0, 0, 0]  # low probability is blue in RGB order
    assert rgb[0, 2, 0] > rgb[0, 2, 2]  # high probability is red
    jet = heatmap(prob, cv2.COLORMAP_JET)
    assert not np.array_equal(jet, rgb)


@pytest.mark.parametrize("bad", [np.array([[1.5]]), np.array([[-0.1]]), np.array([[np.nan]])])
def test_heatmap_refuses_out_of_range(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        heatmap(bad)
