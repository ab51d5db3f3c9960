"""Issue 20 section 2, end to end: ``icpd infer`` on a 4-band uint16 GeoTIFF gives the same labels,
or the same refusal, with rasterio (windowed reads) and without it (the runtime-only install).

Before: without rasterio the scene was read as band 1 replicated to grey, ``infer`` exited 0 with
wrong masks and no word about the lost georeferencing, and ``--bands 3,2,1`` was refused as "a
file with 1 band(s)"; with rasterio the refusal said "1x1 (HxW), 4 band(s), int64".
"""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from icpd.cli import app
from tests.runtime.supports import make_supports

rasterio = pytest.importorskip("rasterio", reason="rasterio (the icpd[geo] extra) is not installed")
from rasterio.transform import from_origin

runner = CliRunner()


@pytest.fixture(scope="module")
def model(tiny_model_dir, tmp_path_factory):
    return tiny_model_dir, make_supports(tiny_model_dir, tmp_path_factory.mktemp("supports"))


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_infer_four_band_uint16_geotiff_same_with_and_without_rasterio(model, tmp_path, monkeypatch):
    model_dir, supports = model
    rng = np.random.default_rng(5)
    bands = rng.integers(200, 3000, (4, 150, 170)).astype(np.uint16)  # 12-bit counts, R G B NIR
    bands[:, 30:90, 40:120] += np.array([2000, 300, 300, 900], np.uint16)[:, None, None]  # a red-ish field
    scene = tmp_path / "rgbn.tif"
    with rasterio.open(scene, "w", driver="GTiff", height=150, width=170, count=4, dtype="uint16", crs="EPSG:32633",
                       transform=from_origin(500000.0, 4600000.0, 10.0, 10.0)) as ds:
        ds.write(bands)
    base = ["infer", "--model", str(model_dir), "--support", str(supports[0]), "--threads", "1", str(scene)]

    def run(out: str, *extra: str, hide_rasterio: bool):
        with monkeypatch.context() as m:
            if hide_rasterio:
                m.setitem(sys.modules, "rasterio", None)  # import rasterio -> ImportError, as without the extra
            return runner.invoke(app, [*base, "--out", str(tmp_path / out), *extra])

    refused = [run(f"r{i}", hide_rasterio=hide) for i, hide in enumerate((False, True))]
    errors = [[line for line in r.output.splitlines() if line.startswith("error: ")] for r in refused]
    assert all(r.exit_code != 0 for r in refused), [r.output for r in refused]
    assert errors[0] == errors[1] and len(errors[0]) == 1, errors
    assert "150x170 (HxW), 4 band(s), uint16: found 4 bands" in errors[0][0] and "int64" not in errors[0][0]

    with_rio = run("with", "--bands", "3,2,1", hide_rasterio=False)
    without = run("without", "--bands", "3,2,1", hide_rasterio=True)
    assert with_rio.exit_code == 0 and without.exit_code == 0, (with_rio.output, without.output)
    a = cv2.imread(str(tmp_path / "with" / "rgbn_labels.png"), cv2.IMREAD_UNCHANGED)
    b = cv2.imread(str(tmp_path / "without" / "rgbn_labels.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(a, b)
    assert (tmp_path / "with" / "rgbn_labels.tif").is_file()  # georeferenced output with the extra only
    assert not (tmp_path / "without" / "rgbn_labels.tif").exists()
    note = "GeoTIFF georeferencing (CRS, transform) not kept: reading it needs rasterio (pip install 'icpd[geo]')"
    assert note in _flat(without.output) and note not in _flat(with_rio.output)
    assert "used bands (3, 2, 1) of 4" in _flat(with_rio.output)
    assert "used bands (3, 2, 1) of 4" in _flat(without.output)
