"""The readers given a file's bytes (``data=``, what `icpd serve` decodes request bodies with) give what
they give for the file itself, and never open the path they name."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from icpd.io import ImageError, read_image, read_mask
from icpd.io.windows import WindowReader
from tests.io.test_raster_input import _with_orientation


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    rgb = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    ok, jpeg = cv2.imencode(".jpg", rgb[:, :, ::-1])
    assert ok
    out = {"rgba.png": tmp_path / "rgba.png", "exif.jpg": tmp_path / "exif.jpg", "rgbn.tif": tmp_path / "rgbn.tif",
           "mask.png": tmp_path / "mask.png"}
    cv2.imwrite(str(out["rgba.png"]), np.dstack([rgb, np.full((40, 60), 9, np.uint8)]))
    out["exif.jpg"].write_bytes(_with_orientation(jpeg.tobytes(), 6))
    cv2.imwrite(str(out["rgbn.tif"]), np.dstack([rgb, rgb[:, :, :1]])[:, :, [2, 1, 0, 3]])
    mask = np.zeros((40, 60), np.uint8)
    mask[5:20, 10:30] = 255
    cv2.imwrite(str(out["mask.png"]), mask)
    return out


@pytest.mark.parametrize(("name", "bands"), [("rgba.png", None), ("exif.jpg", None), ("rgbn.tif", (3, 2, 1))])
def test_read_image_of_bytes_equals_the_file(files, tmp_path, name, bands):
    path = files[name]
    from_file = read_image(path, bands)
    elsewhere = tmp_path / "never" / name  # the name only: it does not exist
    from_bytes = read_image(elsewhere, bands, data=path.read_bytes())
    np.testing.assert_array_equal(from_bytes.pixels, from_file.pixels)
    assert from_bytes.notes == from_file.notes and from_file.notes  # RGBA dropped, EXIF rotation, bands used
    assert from_bytes.path == elsewhere


def test_refusals_name_the_given_name(files, tmp_path):
    with pytest.raises(ImageError, match=r"^image body\.tif: 40x60 \(HxW\), 4 band\(s\), uint8: found 4 bands"):
        read_image("body.tif", data=files["rgbn.tif"].read_bytes())
    with pytest.raises(ImageError, match=r"^image body\.png could not be decoded as an image"):
        read_image("body.png", data=b"\x89PNG\r\n\x1a\n" + bytes(40))


def test_read_mask_of_bytes_equals_the_file(files):
    like = read_image(files["rgba.png"])
    np.testing.assert_array_equal(read_mask("m.png", like=like, data=files["mask.png"].read_bytes()),
                                  read_mask(files["mask.png"], like=like))


def test_window_reader_of_bytes_equals_the_file(tmp_path):
    import rasterio
    from affine import Affine

    rgb = np.random.default_rng(1).integers(1, 256, (3, 50, 70), dtype=np.uint8)
    rgb[:, :10, :10] = 0
    path = tmp_path / "geo.tif"
    with rasterio.open(path, "w", driver="GTiff", height=50, width=70, count=3, dtype="uint8", nodata=0,
                       crs=rasterio.crs.CRS.from_epsg(32633), transform=Affine(2.0, 0, 10.0, 0, -2.0, 90.0)) as dst:
        dst.write(rgb)
    with WindowReader(path) as a, WindowReader(tmp_path / "absent.tif", data=path.read_bytes()) as b:
        np.testing.assert_array_equal(b.read(0, 0, 50, 70), a.read(0, 0, 50, 70))
        np.testing.assert_array_equal(b.nodata_mask(0, 50), a.nodata_mask(0, 50))
        assert (b.geo, b.nodata, b.notes) == (a.geo, a.nodata, a.notes) and b.geo is not None
        assert b.nodata_mask(0, 50)[:10, :10].all()
