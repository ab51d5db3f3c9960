"""Image and label decoding: accepted conversions and refusals that name the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from icpd.data.imageio import DatasetError, read_image, read_label


def test_rgb_roundtrip_keeps_channel_order(tmp_path, write_image):
    img = np.zeros((4, 5, 3), np.uint8)
    img[..., 0] = 200  # red only
    out = read_image(write_image(tmp_path / "a.png", img))
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8
    assert (out[..., 0] == 200).all() and (out[..., 1:] == 0).all()


def test_grayscale_is_copied_to_three_channels(tmp_path, write_image):
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5)
    out = read_image(write_image(tmp_path / "g.png", gray))
    assert out.shape == (4, 5, 3)
    for ch in range(3):
        np.testing.assert_array_equal(out[..., ch], gray)


def test_uint16_follows_the_inference_rule(tmp_path, write_image):
    from icpd.io import read_image as read_raster

    img = np.linspace(0, 4000, 64).astype(np.uint16).reshape(8, 8)  # 12-bit data in a 16-bit file
    path = write_image(tmp_path / "w.png", img)
    out = read_image(path)
    np.testing.assert_array_equal(out, read_raster(path).pixels)  # same pixels as at inference
    assert out.min() == 0 and out.max() == 255  # stretched, not /257 (which would be nearly black)


def test_out_of_range_float_tiff_is_refused(tmp_path, write_image):
    path = write_image(tmp_path / "f.tif", np.full((3, 3, 3), 2.5, np.float32))
    with pytest.raises(DatasetError, match="f.tif"):
        read_image(path)


def test_opaque_alpha_is_dropped(tmp_path, write_image):
    rgba = np.zeros((3, 3, 4), np.uint8)
    rgba[..., 2] = 90  # blue
    rgba[..., 3] = 255
    out = read_image(write_image(tmp_path / "o.png", rgba))
    assert out.shape == (3, 3, 3) and (out[..., 2] == 90).all() and (out[..., :2] == 0).all()


def test_four_band_tiff_is_refused(tmp_path, write_image):
    path = write_image(tmp_path / "nir.tif", np.full((3, 3, 4), 100, np.uint8))  # RGB + NIR? RGBA? ambiguous
    with pytest.raises(DatasetError, match="nir.tif") as err:
        read_image(path)
    assert "bands" in str(err.value)


def test_missing_and_corrupt_files_are_named(tmp_path):
    with pytest.raises(DatasetError, match="nothere.png"):
        read_image(tmp_path / "nothere.png")
    bad = tmp_path / "junk.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="junk.png"):
        read_image(bad)
    with pytest.raises(DatasetError, match="junk.png"):
        read_label(bad)


def test_label_rgb_with_equal_channels_is_accepted(tmp_path, write_image):
    lab = np.array([[0, 3], [15, 7]], np.uint8)
    out = read_label(write_image(tmp_path / "l.png", np.repeat(lab[..., None], 3, 2)))
    np.testing.assert_array_equal(out, lab)


def test_label_palette_indices_are_class_ids(tmp_path):
    lab = np.array([[0, 1], [2, 14]], np.uint8)
    im = Image.fromarray(lab, mode="L").convert("P")
    im.putpalette([v % 256 for v in range(0, 768 * 5, 5)])
    im.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_label(tmp_path / "p.png"), lab)


def test_colour_coded_label_is_refused(tmp_path, write_image):
    lab = np.zeros((2, 2, 3), np.uint8)
    lab[0, 0] = (0, 63, 127)
    with pytest.raises(DatasetError, match="colour.png"):
        read_label(write_image(tmp_path / "colour.png", lab))


def test_label_values_out_of_range_are_named(tmp_path, write_image):
    lab = np.array([[0, 16], [40, 3]], np.uint8)
    path = write_image(tmp_path / "big.png", lab)
    with pytest.raises(DatasetError, match="big.png") as err:
        read_label(path)
    assert "[16, 40]" in str(err.value)
    np.testing.assert_array_equal(read_label(path, max_label=40), lab)
