"""Label colouring, overlays (vivid colours, outlines, legend), heatmaps (colour bar), the label GeoTIFF's colours.

What a person saw when looking at these pictures is in the closing note of issue 12 (section 5); here
is what can be asserted."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from icpd.io.viz import (
    LEGEND_MAX_FRACTION,
    OVERLAY_PALETTE,
    PALETTE,
    colorize_labels,
    colour_hex,
    heatmap,
    overlay,
    voc_palette,
)


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
    half = overlay(image, labels, alpha=0.5, outline=False)
    assert half.shape == image.shape and half.dtype == np.uint8
    assert (half[labels == 0] == 100).all()  # background untouched
    assert tuple(half[0, 1]) == (178, 50, 178)  # round(0.5 * 100 + 0.5 * (255, 0, 255)): class 1 is magenta
    np.testing.assert_array_equal(overlay(image, labels, alpha=0.0, outline=False), image)
    full = overlay(image, labels, alpha=1.0)
    np.testing.assert_array_equal(full[labels > 0], colorize_labels(labels, OVERLAY_PALETTE)[labels > 0])
    voc = overlay(image, labels, alpha=0.5, palette=PALETTE, outline=False)
    assert tuple(voc[0, 1]) == (114, 50, 50)  # an explicit palette still wins
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


# Typical aerial land cover (RGB): fields, forest, soil, roads and roofs, water. A class colour must
# stand out from all of them (dark green / dark red VOC colours did not).
AERIAL = np.array([(110, 130, 70), (60, 90, 50), (140, 125, 95), (110, 110, 105), (45, 75, 95), (150, 170, 80)], float)


def test_overlay_colours_distinct_and_far_from_aerial_scenes() -> None:
    colours = OVERLAY_PALETTE[1:16].astype(float)
    pair = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
    assert pair[~np.eye(15, dtype=bool)].min() > 60  # pairwise distinct
    to_scene = np.linalg.norm(colours[:, None] - AERIAL[None], axis=-1)
    assert to_scene.min() > 90, to_scene.min(axis=1)
    voc_to_scene = np.linalg.norm(PALETTE[1:4].astype(float)[:, None] - AERIAL[None], axis=-1)
    assert voc_to_scene.min() < 90  # the old default (VOC) had colours lost on fields


def test_overlay_outlines_regions() -> None:
    image = np.full((40, 40, 3), 100, np.uint8)
    labels = np.zeros((40, 40), np.int64)
    labels[10:30, 10:30] = 1
    out = overlay(image, labels, alpha=0.3)
    colour = tuple(OVERLAY_PALETTE[1])
    assert tuple(out[10, 20]) == colour and tuple(out[20, 10]) == colour  # the border: full colour
    assert tuple(out[20, 20]) != colour
    assert tuple(out[20, 20]) == tuple(overlay(image, labels, 0.3, outline=False)[20, 20])
    assert (out[labels == 0] == 100).all()  # the outline stays on the labelled side


def test_overlay_legend_names_each_class_in_an_empty_corner() -> None:
    image = np.full((256, 256, 3), 100, np.uint8)
    labels = np.zeros((256, 256), np.int64)
    labels[:100, :100] = 1  # top-left is busy
    labels[200:, 200:] = 2  # and bottom-right
    plain = overlay(image, labels)
    named = overlay(image, labels, class_names=["ship", "storage tank"])
    assert named.shape == image.shape
    changed = np.argwhere((named != plain).any(-1))
    (y0, x0), (y1, x1) = changed.min(0), changed.max(0)
    assert (y0 == 0 and x1 == 255) or (y1 == 255 and x0 == 0), (y0, x0, y1, x1)  # an empty corner
    box = named[y0:y1 + 1, x0:x1 + 1].reshape(-1, 3)
    for k in (1, 2):  # a swatch of each class colour
        assert (box == OVERLAY_PALETTE[k]).all(-1).sum() >= 20
    assert (box == 255).all(-1).sum() >= 20  # white text
    more = overlay(image, labels, class_names=["ship", "storage tank", "a much longer class name"])
    assert (more != plain).any(-1).sum() > changed.shape[0]  # the box grows with the names


def test_a_legend_that_would_hide_much_of_a_small_tile_is_left_out() -> None:
    """A 128 px tile: two names would cover 23 % of it (over LEGEND_MAX_FRACTION)."""
    image = np.full((128, 128, 3), 100, np.uint8)
    labels = np.zeros((128, 128), np.int64)
    labels[40:80, 40:80] = 1
    names = ["basketball court", "storage tank"]
    assert np.array_equal(overlay(image, labels, class_names=names), overlay(image, labels))
    big = np.full((512, 512, 3), 100, np.uint8)
    big_labels = cv2.resize(labels, (512, 512), interpolation=cv2.INTER_NEAREST)
    changed = (overlay(big, big_labels, class_names=names) != overlay(big, big_labels)).any(-1)
    assert 0 < changed.mean() <= LEGEND_MAX_FRACTION  # drawn where it fits
    r, g, b = OVERLAY_PALETTE[1]
    assert colour_hex(1) == f"#{r:02x}{g:02x}{b:02x}"


def test_heatmap_colorbar() -> None:
    prob = np.zeros((128, 200), np.float32)
    plain, bar = heatmap(prob), heatmap(prob, colorbar=True)
    assert bar.shape == plain.shape
    cols = np.flatnonzero((bar != plain).any(-1).any(0))
    assert cols.min() > 150 and cols.max() == 199  # a strip at the right edge only
    top, bottom = heatmap(np.ones((1, 1), np.float32))[0, 0], plain[0, 0]
    strip = bar[:, cols.min():]
    assert (strip == top).all(-1).any() and (strip == bottom).all(-1).any()  # both ends of the scale
    assert (strip == 255).all(-1).sum() > 10  # tick labels
    np.testing.assert_array_equal(heatmap(np.zeros((8, 8), np.float32), colorbar=True),
                                  heatmap(np.zeros((8, 8), np.float32)))


def test_label_geotiff_carries_colour_table_and_class_names(tmp_path) -> None:
    rasterio = pytest.importorskip("rasterio", reason="the geo extra (rasterio) is not installed")
    from pathlib import Path

    from icpd.io.raster import GeoInfo, Raster
    from icpd.io.writers import write_geotiff_like

    geo = GeoInfo(crs_wkt=rasterio.crs.CRS.from_epsg(32633).to_wkt(),
                  transform=(10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0))
    src = Raster(pixels=np.zeros((4, 5, 3), np.uint8), path=Path("scene.tif"), geo=geo)
    labels = np.array([[0, 1, 2, 0, 1]] * 4, np.uint8)
    out = write_geotiff_like(src, labels, tmp_path / "l.tif", colormap=OVERLAY_PALETTE[:3],
                             class_names=["background", "ship", "storage tank"])
    with rasterio.open(out) as ds:
        np.testing.assert_array_equal(ds.read(1), labels)
        cmap = ds.colormap(1)
        assert cmap[1][:3] == tuple(int(v) for v in OVERLAY_PALETTE[1])
        assert cmap[2][:3] == tuple(int(v) for v in OVERLAY_PALETTE[2])
        assert ds.tags(1)["CLASS_1"] == "ship" and ds.tags(1)["CLASS_2"] == "storage tank"
        assert "storage tank" in ds.descriptions[0]
    with pytest.raises(ValueError, match="single-band uint8"):
        write_geotiff_like(src, labels.astype(np.float32), tmp_path / "p.tif", colormap=OVERLAY_PALETTE[:3])
