"""Image/mask reading conversions and refusals, atomic writes, input listing."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from icpd.io import (
    GEO_EXTRA_HINT,
    GeoInfo,
    ImageError,
    Raster,
    atomic_write,
    list_inputs,
    read_image,
    read_mask,
    write_geotiff_like,
    write_label_png,
    write_png,
)


def _rgb(h: int = 6, w: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_cv2(path: Path, array_file_order: np.ndarray) -> Path:
    """Write bands in *file* order (cv2 expects BGR(A), so swap the first three)."""
    arr = array_file_order
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[:, :, [2, 1, 0, 3][: arr.shape[2]]]
    assert cv2.imwrite(str(path), np.ascontiguousarray(arr))
    return path


def _no_dotfiles(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------- read_image


def test_rgb_png_roundtrip_is_rgb_order(tmp_path: Path) -> None:
    rgb = _rgb()
    rgb[0, 0] = (255, 0, 0)  # pure red must stay in channel 0
    r = read_image(_write_cv2(tmp_path / "a.png", rgb))
    assert r.pixels.dtype == np.uint8 and r.pixels.shape == (6, 8, 3)
    np.testing.assert_array_equal(r.pixels, rgb)
    assert r.notes == () and r.geo is None and r.path == tmp_path / "a.png"
    assert (r.height, r.width) == (6, 8)


def test_jpeg_and_tiff_rgb(tmp_path: Path) -> None:
    flat = np.zeros((16, 16, 3), np.uint8)
    flat[...] = (200, 40, 10)
    jpg = read_image(_write_cv2(tmp_path / "a.JPG", flat))
    assert np.abs(jpg.pixels.astype(int) - flat).max() <= 3  # lossy, but channel order kept
    tif = read_image(_write_cv2(tmp_path / "a.tif", flat))
    np.testing.assert_array_equal(tif.pixels, flat)


def test_grayscale_is_replicated(tmp_path: Path) -> None:
    gray = _rgb()[:, :, 0]
    r = read_image(_write_cv2(tmp_path / "g.png", gray))
    assert r.pixels.shape == (6, 8, 3)
    for c in range(3):
        np.testing.assert_array_equal(r.pixels[:, :, c], gray)
    assert any("grayscale" in n for n in r.notes)


def test_uint16_percentile_stretch(tmp_path: Path) -> None:
    # 12-bit-style data: 0..4000 in a uint16 container. /257 would give 0..15 (near black).
    vals = np.linspace(0, 4000, 100 * 3).round().astype(np.uint16).reshape(10, 10, 3)
    r = read_image(_write_cv2(tmp_path / "u16.png", vals))
    flat = vals.ravel()
    lo, hi = (
        np.sort(flat)[int(np.ceil(0.02 * flat.size)) - 1],
        np.sort(flat)[int(np.ceil(0.98 * flat.size)) - 1],
    )
    expected = np.round(np.clip((vals.astype(float) - lo) * 255 / (hi - lo), 0, 255)).astype(np.uint8)
    np.testing.assert_array_equal(r.pixels, expected)
    assert r.pixels.min() == 0 and r.pixels.max() == 255
    assert any("uint16" in n and f"[{lo}, {hi}]" in n for n in r.notes)


def test_uint16_stretch_is_joint_over_bands(tmp_path: Path) -> None:
    # A band that is uniformly darker must stay darker (per-band stretching would equalise it).
    base = np.linspace(1000, 3000, 64).reshape(8, 8).astype(np.uint16)
    img = np.stack([base, base, base // 2], axis=-1)
    px = read_image(_write_cv2(tmp_path / "u16.tif", img)).pixels.astype(int)
    assert (px[:, :, 2] <= px[:, :, 0]).all() and px[:, :, 2].mean() < px[:, :, 0].mean() - 50


def test_uint16_constant_image(tmp_path: Path) -> None:
    img = np.full((4, 4), 257 * 100, np.uint16)
    r = read_image(_write_cv2(tmp_path / "c.png", img))
    assert (r.pixels == 100).all()


def test_rgba_png_alpha_dropped(tmp_path: Path) -> None:
    rgba = np.concatenate([_rgb(), np.zeros((6, 8, 1), np.uint8)], axis=-1)  # fully transparent
    r = read_image(_write_cv2(tmp_path / "a.png", rgba))
    np.testing.assert_array_equal(r.pixels, rgba[:, :, :3])
    assert any("alpha" in n for n in r.notes)


def test_four_band_tiff_refused_then_bands_selects(tmp_path: Path) -> None:
    bands = np.stack([np.full((5, 7), 10 * (i + 1), np.uint8) for i in range(4)], axis=-1)  # 10,20,30,40
    path = _write_cv2(tmp_path / "rgbn.tif", bands)
    with pytest.raises(ImageError) as err:
        read_image(path)
    msg = str(err.value)
    assert str(path) in msg and "4 bands" in msg and "bands=(" in msg and "uint8" in msg and "5x7" in msg
    r = read_image(path, bands=(4, 3, 2))  # 1-based, file order: NIR, R... false colour
    assert tuple(r.pixels[0, 0]) == (40, 30, 20)
    assert any("(4, 3, 2)" in n for n in r.notes)
    assert tuple(read_image(path, bands=(1, 2, 3)).pixels[0, 0]) == (10, 20, 30)


@pytest.mark.parametrize("bands", [(0, 1, 2), (1, 2, 5), (1, 2)])
def test_invalid_bands_refused(tmp_path: Path, bands: tuple[int, ...]) -> None:
    path = _write_cv2(tmp_path / "a.png", _rgb())
    with pytest.raises(ImageError, match="1-based"):
        read_image(path, bands=bands)  # type: ignore[arg-type]


def test_bands_reorders_rgb(tmp_path: Path) -> None:
    rgb = _rgb()
    r = read_image(_write_cv2(tmp_path / "bgr.png", rgb), bands=(3, 2, 1))
    np.testing.assert_array_equal(r.pixels, rgb[:, :, ::-1])


def test_float_tiff_in_unit_range_scaled(tmp_path: Path) -> None:
    f = np.random.default_rng(1).random((6, 8, 3)).astype(np.float32)
    f[0, 0] = (0.0, 1.0, 0.5)
    r = read_image(_write_cv2(tmp_path / "f.tif", f))
    np.testing.assert_array_equal(r.pixels, np.round(f * 255).astype(np.uint8))
    assert tuple(r.pixels[0, 0]) == (0, 255, 128)
    assert any("float32" in n for n in r.notes)


def test_float_tiff_out_of_range_refused(tmp_path: Path) -> None:
    f = np.full((4, 4), 1.0, np.float32)
    f[0, 0] = 3000.0  # reflectance * 10000, say
    path = _write_cv2(tmp_path / "refl.tif", f)
    with pytest.raises(ImageError) as err:
        read_image(path)
    msg = str(err.value)
    assert str(path) in msg and "3000" in msg and "[0, 1]" in msg and "float32" in msg


def test_float_nan_refused(tmp_path: Path) -> None:
    f = np.full((4, 4), 0.5, np.float32)
    f[1, 1] = np.nan
    path = _write_cv2(tmp_path / "nan.tif", f)
    with pytest.raises(ImageError, match="NaN"):
        read_image(path)


def test_int16_refused(tmp_path: Path) -> None:
    path = _write_cv2(tmp_path / "dem.tif", np.full((4, 4), -5, np.int16))
    with pytest.raises(ImageError) as err:
        read_image(path)
    assert str(path) in str(err.value) and "int16" in str(err.value)


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_text("definitely not a picture")
    with pytest.raises(ImageError) as err:
        read_image(path)
    assert str(path) in str(err.value) and "could not be decoded" in str(err.value)


def test_truncated_png(tmp_path: Path) -> None:
    full = _write_cv2(tmp_path / "full.png", _rgb(64, 64))
    cut = tmp_path / "cut.png"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(ImageError) as err:
        read_image(cut)
    assert str(cut) in str(err.value) and "truncated" in str(err.value)


def test_missing_empty_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="does not exist") as err:
        read_image(tmp_path / "nope.png")
    assert "nope.png" in str(err.value)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(ImageError, match="not a file"):
        read_image(tmp_path)


def test_image_error_is_value_error() -> None:
    assert issubclass(ImageError, ValueError)


def test_undecodable_tiff_without_rasterio_names_geo_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "rasterio", None)  # import rasterio -> ImportError
    path = tmp_path / "odd.tif"
    path.write_bytes(b"II*\x00garbage-not-a-real-tiff")
    with pytest.raises(ImageError) as err:
        read_image(path)
    assert GEO_EXTRA_HINT in str(err.value) and str(path) in str(err.value)


def test_plain_tiff_without_rasterio_has_no_geo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rasterio", None)
    r = read_image(_write_cv2(tmp_path / "a.tiff", _rgb()))
    assert r.geo is None


# ---------------------------------------------------------------------------- read_mask


@pytest.mark.parametrize("scale", [1, 255])
def test_mask_01_and_0255(tmp_path: Path, scale: int) -> None:
    m = (np.random.default_rng(2).random((6, 8)) > 0.5).astype(np.uint8)
    out = read_mask(_write_cv2(tmp_path / "m.png", m * scale))
    assert out.dtype == np.uint8 and out.shape == (6, 8)
    np.testing.assert_array_equal(out, m)


def test_mask_rgb_equal_channels_and_all_255(tmp_path: Path) -> None:
    m = np.zeros((6, 8), np.uint8)
    m[2:4, 3:6] = 255
    out = read_mask(_write_cv2(tmp_path / "m.png", np.stack([m] * 3, axis=-1)))
    np.testing.assert_array_equal(out, m // 255)
    full = read_mask(_write_cv2(tmp_path / "full.png", np.full((3, 3), 255, np.uint8)))
    assert (full == 1).all()


def test_mask_class_index_map_refused(tmp_path: Path) -> None:
    m = np.zeros((6, 8), np.uint8)
    m[0, :3] = 3
    m[1, :3] = 7
    path = _write_cv2(tmp_path / "labels.png", m)
    with pytest.raises(ImageError) as err:
        read_mask(path)
    msg = str(err.value)
    assert str(path) in msg and "{0, 3, 7}" in msg and "labels == k" in msg


def test_mask_mixed_01_255_refused(tmp_path: Path) -> None:
    m = np.array([[0, 1, 255]], np.uint8)
    with pytest.raises(ImageError, match=r"\{0, 1, 255\}"):
        read_mask(_write_cv2(tmp_path / "m.png", m))


def test_mask_coloured_refused(tmp_path: Path) -> None:
    m = np.zeros((4, 4, 3), np.uint8)
    m[1, 1] = (255, 0, 0)
    path = _write_cv2(tmp_path / "m.png", m)
    with pytest.raises(ImageError, match="channels that differ") as err:
        read_mask(path)
    assert str(path) in str(err.value)


def test_mask_size_must_match_image(tmp_path: Path) -> None:
    img = read_image(_write_cv2(tmp_path / "img.png", _rgb(6, 8)))
    path = _write_cv2(tmp_path / "m.png", np.zeros((6, 9), np.uint8))
    with pytest.raises(ImageError) as err:
        read_mask(path, like=img)
    msg = str(err.value)
    assert "6x9" in msg and "6x8" in msg and "m.png" in msg and "img.png" in msg
    assert read_mask(_write_cv2(tmp_path / "ok.png", np.zeros((6, 8), np.uint8)), like=img).shape == (6, 8)


def test_mask_missing(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="mask .*missing.png does not exist"):
        read_mask(tmp_path / "missing.png")


# ---------------------------------------------------------------------------- writing


def test_write_png_roundtrip_rgb_and_gray(tmp_path: Path) -> None:
    rgb = _rgb()
    write_png(tmp_path / "o.png", rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "o.png").pixels, rgb)
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8)
    write_png(tmp_path / "g.png", gray)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "g.png"), cv2.IMREAD_UNCHANGED), gray)
    assert _no_dotfiles(tmp_path) == ["g.png", "o.png"]


def test_write_png_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.png"):
        write_png(tmp_path / "o.jpg", _rgb())
    with pytest.raises(ValueError, match="float64"):
        write_png(tmp_path / "o.png", np.zeros((4, 4)))
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_failure_keeps_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_bytes(b"half-writ")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"previous"
    assert _no_dotfiles(tmp_path) == ["out.png"]  # temp file removed


def test_atomic_write_failure_leaves_nothing_when_new(tmp_path: Path) -> None:
    with pytest.raises(KeyError), atomic_write(tmp_path / "new.png") as tmp:
        tmp.write_bytes(b"x")
        raise KeyError("k")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_success_replaces(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with atomic_write(target) as tmp:
        assert target.read_bytes() == b"old"  # old file still intact during the write
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert _no_dotfiles(tmp_path) == ["out.bin"]


def test_atomic_write_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"), atomic_write(tmp_path / "no" / "out.png"):
        pass


def test_write_png_failure_mid_write_keeps_previous(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "o.png"
    write_png(target, _rgb(seed=1))
    before = target.read_bytes()

    def fail(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("icpd.io.atomic.os.fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        write_png(target, _rgb(seed=2))
    assert target.read_bytes() == before
    assert _no_dotfiles(tmp_path) == ["o.png"]


def _geo_raster(h: int = 4, w: int = 5) -> Raster:
    geo = GeoInfo(crs_wkt='GEOGCS["WGS 84"]', transform=(10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0))
    return Raster(pixels=np.zeros((h, w, 3), np.uint8), path=Path("scene.tif"), geo=geo)


def test_write_label_png_with_world_file(tmp_path: Path) -> None:
    labels = np.zeros((4, 5), np.uint8)
    labels[1, 2] = 1
    written = write_label_png(tmp_path / "pred.png", labels, like=_geo_raster())
    assert [p.name for p in written] == ["pred.png", "pred.pgw", "pred.png.aux.xml"]
    np.testing.assert_array_equal(cv2.imread(str(written[0]), cv2.IMREAD_UNCHANGED), labels)
    # world file: A, D, B, E, then the *centre* of the top-left pixel
    assert [float(v) for v in written[1].read_text().split()] == [10.0, 0.0, 0.0, -10.0, 500005.0, 3999995.0]
    assert '<SRS>GEOGCS["WGS 84"]</SRS>' in written[2].read_text()


def test_write_label_png_without_geo_and_refusals(tmp_path: Path) -> None:
    like = Raster(pixels=np.zeros((4, 5, 3), np.uint8))
    assert write_label_png(tmp_path / "p.png", np.ones((4, 5), bool), like=like) == [tmp_path / "p.png"]
    with pytest.raises(ValueError, match="4x5"):
        write_label_png(tmp_path / "q.png", np.ones((5, 5), np.uint8), like=like)
    with pytest.raises(ValueError, match="300"):
        write_label_png(tmp_path / "q.png", np.full((4, 5), 300, np.int32))
    assert _no_dotfiles(tmp_path) == ["p.png"]


def test_write_geotiff_without_rasterio_names_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rasterio", None)
    with pytest.raises(ImportError, match=r"pip install 'icpd\[geo\]'"):
        write_geotiff_like(_geo_raster(), np.zeros((4, 5), np.uint8), tmp_path / "o.tif")
    assert list(tmp_path.iterdir()) == []


def test_geotiff_roundtrip_with_rasterio(tmp_path: Path) -> None:
    rasterio = pytest.importorskip("rasterio", reason="rasterio (the icpd[geo] extra) is not installed")
    from affine import Affine

    src_path = tmp_path / "scene.tif"
    transform = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0)
    with rasterio.open(
        src_path,
        "w",
        driver="GTiff",
        height=4,
        width=5,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=transform,
    ) as ds:
        ds.write(np.zeros((3, 4, 5), np.uint8))
    src = read_image(src_path)
    assert src.geo is not None and src.geo.transform == tuple(transform)[:6]
    out = write_geotiff_like(src, np.ones((4, 5), np.uint8), tmp_path / "pred.tif")
    with rasterio.open(out) as ds:
        assert ds.crs == rasterio.crs.CRS.from_epsg(32633) and ds.transform == transform
        assert (ds.read(1) == 1).all()


# ---------------------------------------------------------------------------- list_inputs


def test_list_inputs_folders_files_dedup(tmp_path: Path) -> None:
    for name in ["b.PNG", "a.jpg", "c.TIFF", "d.jpeg", "e.tif", "notes.txt", ".hidden.png"]:
        (tmp_path / name).write_bytes(b"x")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "z.png").write_bytes(b"x")
    got = list_inputs([tmp_path, tmp_path / "a.jpg", str(tmp_path)])
    assert [p.name for p in got] == ["a.jpg", "b.PNG", "c.TIFF", "d.jpeg", "e.tif"]
    rec = list_inputs(tmp_path, recursive=True)
    assert [p.relative_to(tmp_path).as_posix() for p in rec] == [
        "a.jpg",
        "b.PNG",
        "c.TIFF",
        "d.jpeg",
        "e.tif",
        "sub/z.png",
    ]
    assert list_inputs(sub) == [sub / "z.png"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert list_inputs(empty) == []


def test_list_inputs_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="ghost.png does not exist"):
        list_inputs([tmp_path, tmp_path / "ghost.png"])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ImageError, match="notes.txt"):
        list_inputs(tmp_path / "notes.txt")
