"""Windowed scenes in `icpd infer`: equal to a plain whole-scene blend, bounded memory, geo kept,
per-class statistics, and the run bookkeeping (lock, manifest resume, interrupted summary)."""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from icpd.apps.infer import outputs as infer_outputs
from icpd.apps.infer.local import InferOptions, infer_paths
from icpd.cli import app
from icpd.io.locks import LockHeldError, exclusive_lock, lock_path
from icpd.io.viz import heatmap, overlay
from icpd.runtime.predictor import Predictor
from icpd.runtime.tiling import plan_tiles
from tests.runtime.scene_reference import reference_scene
from tests.runtime.supports import make_supports

rasterio = pytest.importorskip("rasterio", reason="rasterio (the icpd[geo] extra) is not installed")
from affine import Affine

runner = CliRunner()
S = 128  # tiny preset input size
TRANSFORM = Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0)  # 0.5 m pixels: 0.25 m² each


def scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    cv2.rectangle(img, (20, 30), (90, 100), (200, 40, 40), -1)
    return img


def write_tif(path: Path, rgb: np.ndarray, extra_band: bool = False, nodata: float | None = None) -> Path:
    bands = rgb.transpose(2, 0, 1)
    if extra_band:  # RGB + NIR: NIR first, so --bands 2,3,4 picks RGB
        bands = np.concatenate([np.full((1, *rgb.shape[:2]), 7, np.uint8), bands])
    with rasterio.open(path, "w", driver="GTiff", height=rgb.shape[0], width=rgb.shape[1],
                       count=bands.shape[0], dtype="uint8", crs="EPSG:32633", transform=TRANSFORM, tiled=True,
                       compress="deflate", nodata=nodata) as ds:
        ds.write(bands)
    return path


@pytest.fixture(scope="module")
def model(tiny_model_dir, tmp_path_factory):
    return tiny_model_dir, make_supports(tiny_model_dir, tmp_path_factory.mktemp("supports"))


@pytest.fixture(scope="module")
def predictor(model):
    p = Predictor.load(model[0], backend="ort", threads=1)
    for s in model[1]:
        p.add_support(s)
    return p


def test_block_written_tiffs_equal_the_former_strip_path(predictor, tmp_path, monkeypatch):
    """Every GeoTIFF output of a scene written block by block (odd size, wider than tall in tiles so
    it is swept left to right, nodata, two classes, probabilities and priors) equals what the
    full-width strip path wrote: the plain whole-scene blend (tests/runtime/scene_reference.py), and the
    overlay drawn strip by strip."""
    monkeypatch.setattr(infer_outputs, "WHOLE_MAX_PIXELS", 0)  # the large-scene outputs (TIFF only)
    img = scene(150, 403)
    img[:, :37] = 0  # nodata on the left (all three bands = nodata 0)
    write_tif(tmp_path / "w.tif", img, nodata=0)
    options = InferOptions(tile=64, overlap=16, batch=3, save_probs=True, save_priors=True)
    assert infer_paths(predictor, [tmp_path / "w.tif"], tmp_path / "out", options).ok
    ref = reference_scene(predictor, img, 64, 16, 3, priors=True)
    nodata = (img == 0).all(axis=-1)
    labels = np.where(nodata, 255, ref.labels).astype(np.uint8)
    tiles = plan_tiles(150, 403, 64, 16)
    seams = sorted({tiles[i].y for i in range(0, len(tiles), 3)} | {150})  # where the strips were flushed
    shown = np.where(labels == 255, 0, labels)
    overlay_ref = np.concatenate([overlay(img[a:b], shown[a:b], 0.5) for a, b in itertools.pairwise(seams)])
    expected = {"labels": labels[None], "overlay": overlay_ref.transpose(2, 0, 1)}
    for i, name in enumerate(predictor.class_names):
        expected[f"prob_{name}"] = np.round(np.clip(ref.probs[i], 0, 1) * 255).astype(np.uint8)[None]
        expected[f"prior_{name}"] = heatmap(np.clip(ref.priors[i], 0.0, 1.0)).transpose(2, 0, 1)
    assert len(seams) > 2 and nodata.any() and (labels == 1).any() and (labels == 2).any()
    for key, want in expected.items():
        with rasterio.open(tmp_path / "out" / f"w_{key}.tif") as ds:
            np.testing.assert_array_equal(ds.read(), want, err_msg=key)


def test_windowed_geotiff_equals_in_memory_keeps_geo_and_counts_area(predictor, tmp_path):
    img = scene(300, 260)
    write_tif(tmp_path / "a.tif", img)
    options = InferOptions(overlap=32, batch=4, save_probs=True)
    summary = infer_paths(predictor, [tmp_path / "a.tif"], tmp_path / "out", options)
    ref = reference_scene(predictor, img, S, 32, 4)
    with rasterio.open(tmp_path / "out" / "a_labels.tif") as ds:
        labels = ds.read(1)
        assert ds.crs == rasterio.crs.CRS.from_epsg(32633) and ds.transform == TRANSFORM
        assert ds.profile["tiled"] and ds.profile["blockxsize"] == 256 and ds.colormap(1)[1][:3] != (0, 0, 0)
    np.testing.assert_array_equal(labels, ref.labels)  # the windowed path == the plain reference
    prob = cv2.imread(str(tmp_path / "out" / "a_prob_ship.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(prob, np.round(np.clip(ref.probs[0], 0, 1) * 255).astype(np.uint8))
    r = summary.results[0]
    counts = np.bincount(ref.labels.ravel(), minlength=3)
    assert r.pixels == {"ship": int(counts[1]), "tank": int(counts[2])}
    assert r.area_unit == "m²" and r.area == {"ship": counts[1] * 0.25, "tank": counts[2] * 0.25}
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["inputs"][0]["area_unit"] == "m²"


def test_nodata_pixels_get_the_nodata_label_and_count_in_no_class(predictor, tmp_path):
    img = scene(200, 180)
    img[:40] = 0  # a nodata band at the top (all three bands = nodata 0)
    write_tif(tmp_path / "n.tif", img, nodata=0)
    r = infer_paths(predictor, [tmp_path / "n.tif"], tmp_path / "out", InferOptions()).results[0]
    with rasterio.open(tmp_path / "out" / "n_labels.tif") as ds:
        assert ds.nodata == 255 and (ds.read(1)[:40] == 255).all()
    assert r.pixels["nodata"] == 40 * 180


PEAK_RSS = """
import resource, sys, numpy as np
from pathlib import Path
from icpd.apps.infer.local import InferOptions, infer_paths, open_predictor
p = open_predictor(sys.argv[1], sys.argv[2:4], threads=1)
p.predict(np.zeros((16, 128, 128, 3), np.uint8))  # buffers of the batch size allocated before the baseline
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
s = infer_paths(p, [sys.argv[4]], sys.argv[5], InferOptions(tile=256, overlap=32, batch=16))
assert s.ok, s.results[0].error
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)
"""


@pytest.mark.slow
def test_scene_larger_than_the_png_limit_runs_in_bounded_memory(model, tmp_path):
    """A 6000 x 6000 scene: a whole-scene blend would hold ~1.1 GB (pixels, float32 sums, weights,
    result); the windowed one holds the blocks still waiting and a tile batch."""
    h = w = 6000
    with rasterio.open(tmp_path / "big.tif", "w", driver="GTiff", height=h, width=w, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=TRANSFORM, tiled=True, compress="deflate") as ds:
        for y in range(0, h, 500):  # written by strips: the test itself never holds the scene
            strip = np.broadcast_to((np.arange(w, dtype=np.uint16) * 7 % 251).astype(np.uint8), (3, 500, w))
            ds.write(np.ascontiguousarray(strip), window=rasterio.windows.Window(0, y, w, 500))
    proc = subprocess.run([sys.executable, "-c", PEAK_RSS, str(model[0]), *map(str, model[1]),
                           str(tmp_path / "big.tif"), str(tmp_path / "out")],
                          check=False, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    growth_mb = int(proc.stdout.split()[-1])
    assert growth_mb < 300, f"peak RSS grew by {growth_mb} MB over the loaded model"
    with rasterio.open(tmp_path / "out" / "big_labels.tif") as ds:
        assert (ds.width, ds.height) == (w, h) and ds.overviews(1)  # COG: overviews present
    assert (tmp_path / "out" / "big_overlay.tif").is_file()
    assert not (tmp_path / "out" / "big_overlay.png").exists()


def test_restarted_run_skips_complete_scenes_and_redoes_changed_ones(predictor, tmp_path):
    for name, seed in (("a", 0), ("b", 1)):
        cv2.imwrite(str(tmp_path / f"{name}.png"), scene(150, 140, seed))
    out = tmp_path / "out"
    infer_paths(predictor, [tmp_path / "a.png", tmp_path / "b.png"], out, InferOptions())
    good = (out / "b_overlay.png").read_bytes()
    (out / "b_overlay.png").write_bytes(good[:-10])  # a damaged output: same name, other content
    summary = infer_paths(predictor, [tmp_path / "a.png", tmp_path / "b.png"], out, InferOptions())
    a, b = summary.results
    assert any("not redone" in n for n in a.notes) and not any("not redone" in n for n in b.notes)
    assert (out / "b_overlay.png").read_bytes() == good
    assert len(list((out / "runs").glob("*.jsonl"))) == 2  # one manifest per run
    # other options: redone
    other = infer_paths(predictor, [tmp_path / "a.png"], out, InferOptions(threshold=0.7))
    assert not any("not redone" in n for n in other.results[0].notes)


def test_second_run_into_a_busy_folder_is_refused_and_a_stale_lock_taken_over(predictor, tmp_path):
    """The run holds icpd.io.locks.exclusive_lock on its output folder (OUT.lock beside it): a run into a
    folder another run holds is refused naming the holder, nothing written; a lock left by a killed run
    (its pid gone, no kernel lock) is taken over."""
    cv2.imwrite(str(tmp_path / "a.png"), scene(130, 130))
    out = tmp_path / "out"
    with exclusive_lock(out, "infer"):  # another run, holding the folder
        want = (f"{out} is being written by another `icpd infer` run (pid {os.getpid()} on "
                f"{socket.gethostname()},")
        with pytest.raises(LockHeldError, match="^" + re.escape(want)):
            infer_paths(predictor, [tmp_path / "a.png"], out, InferOptions())
    assert not (out / "summary.json").exists() and not (out / "a_labels.png").exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)
    lock = {"pid": int(dead.stdout), "host": socket.gethostname(), "command": "icpd infer", "started": "then"}
    lock_path(out).write_text(json.dumps(lock))
    assert infer_paths(predictor, [tmp_path / "a.png"], out, InferOptions()).ok
    assert not lock_path(out).exists() and lock_path(out) == tmp_path / "out.lock"


def test_interrupted_run_says_so_in_its_summary(predictor, tmp_path):
    for name in ("a", "b"):
        cv2.imwrite(str(tmp_path / f"{name}.png"), scene(130, 130))

    class CtrlC:
        def start_input(self, path): ...
        def scene_planned(self, path, height, width, tiles): ...
        def tiles_done(self, done, total): ...
        def finish_input(self, result):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        infer_paths(predictor, [tmp_path], tmp_path / "out", InferOptions(), CtrlC())
    doc = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert doc["interrupted"] is True and len(doc["inputs"]) == 1


def test_cli_bands_tile_guard_and_unwritable_out(model, tmp_path):
    model_dir, supports = model
    img = scene(140, 150)
    write_tif(tmp_path / "nir.tif", img, extra_band=True)
    write_tif(tmp_path / "rgb.tif", img)
    base = ["infer", "--model", str(model_dir), "--support", str(supports[0]), "-q", "--threads", "1"]
    res = runner.invoke(app, [*base, str(tmp_path / "nir.tif"), "--out", str(tmp_path / "o1"),
                              "--bands", "2,3,4"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, [*base, str(tmp_path / "rgb.tif"), "--out", str(tmp_path / "o2")])
    with (rasterio.open(tmp_path / "o1" / "nir_labels.tif") as a,
          rasterio.open(tmp_path / "o2" / "rgb_labels.tif") as b):
        np.testing.assert_array_equal(a.read(1), b.read(1))
    res = runner.invoke(app, [*base, str(tmp_path / "rgb.tif"), "--out", str(tmp_path / "o3"),
                              "--tile", "16", "--overlap", "0"])
    assert res.exit_code == 2 and "smallest useful tile for this model is 32 px" in res.output
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = runner.invoke(app, [*base, str(tmp_path / "rgb.tif"), "--out", str(blocker / "sub")])
    assert res.exit_code == 2 and res.output.startswith("error: ") and "Traceback" not in res.output
    assert f"{blocker}: is not a folder" in res.output  # named before the model loads


def test_bare_ray_flag_means_a_local_cluster():
    from icpd.commands.infer import ray_flag_argv

    assert ray_flag_argv(["icpd", "infer", "a.tif", "--ray"])[-1] == "local"
    assert ray_flag_argv(["icpd", "infer", "--ray", "scenes/", "-o", "o"])[3] == "local"
    assert ray_flag_argv(["icpd", "infer", "--ray", "auto", "x"])[3] == "auto"
    assert ray_flag_argv(["icpd", "infer", "--ray", "ray://head:10001"])[3] == "ray://head:10001"




@pytest.mark.parametrize(("h", "w", "tile", "overlap", "batch"),
                         [(150, 403, 64, 16, 3), (300, 260, 128, 32, 4), (40, 70, 128, 0, 2)])
def test_segment_array_equals_the_plain_reference(predictor, h, w, tile, overlap, batch):
    """`segment_array` (run_scene over an in-memory source, blocks gathered) gives bit for bit the plain
    whole-scene weighted sum of the tiles' probabilities (tests/runtime/scene_reference.py): probabilities,
    labels, priors and the tile count; a scene smaller than one tile included."""
    from icpd.runtime.scene import segment_array

    img = scene(h, w, seed=h + w)
    ref = reference_scene(predictor, img, tile, overlap, batch, priors=True)
    got = segment_array(predictor, img, tile, overlap, batch, 0.5, priors=True)
    assert got.tiles == ref.tiles and got.class_names == predictor.class_names
    np.testing.assert_array_equal(got.probs, ref.probs)
    np.testing.assert_array_equal(got.labels, ref.labels)
    np.testing.assert_array_equal(got.priors, ref.priors)
    assert (got.labels > 0).any()
