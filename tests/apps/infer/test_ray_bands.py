"""`icpd infer --ray --bands`: the workers read the band choice that Ray hands them as a list.

Ray Data turns a row's ``(2, 3, 4)`` into ``[2, 3, 4]``; the workers' scene cache could not hash the
list and every scene failed with ``unhashable type: 'list'``. The one band parser
(``icpd.io.parse_bands``) makes it the tuple again; the outputs equal single-process ``icpd infer``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from icpd.apps.infer.local import InferOptions, collect_inputs, infer_paths
from icpd.runtime.predictor import Predictor

rasterio = pytest.importorskip("rasterio", reason="rasterio (the icpd[geo] extra) is not installed")
ray = pytest.importorskip("ray", reason="ray (the icpd[ray] extra) is not installed")
pytest.importorskip("ray.data", reason="ray[data] (the icpd[ray] extra) is not installed")
from icpd.apps.infer.ray_runner import infer_paths_ray  # after the skips: needs ray
from tests.runtime.supports import make_supports
from tests.runtime.test_scene import scene, write_tif

OPTIONS = InferOptions(overlap=32, batch=2, bands=(2, 3, 4))  # NIR first in the file: bands 2-4 are RGB


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_workers_read_the_bands_and_match_single_process(local_ray, tiny_model_dir, tmp_path):
    supports = make_supports(tiny_model_dir, tmp_path / "supports")
    predictor = Predictor.load(tiny_model_dir, backend="ort", threads=1)
    for s in supports:
        predictor.add_support(s)
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    write_tif(scenes / "nir.tif", scene(200, 300, seed=0), extra_band=True)

    local = infer_paths(predictor, [scenes], tmp_path / "local", OPTIONS)
    assert local.ok, [r.error for r in local.failed]
    summary = infer_paths_ray(predictor, tiny_model_dir, supports, collect_inputs([scenes], tmp_path / "ray"),
                              tmp_path / "ray", OPTIONS, actors=1, threads=1)
    assert summary.ok, [r.error for r in summary.failed]
    with rasterio.open(tmp_path / "ray" / "nir_labels.tif") as got, \
            rasterio.open(tmp_path / "local" / "nir_labels.tif") as want:
        np.testing.assert_array_equal(got.read(), want.read())
    assert any("used bands (2, 3, 4) of 4" in n for r in summary.results for n in r.notes)


def test_the_workers_scene_opener_takes_a_list(tmp_path):
    """The worker step itself: a list (as Ray delivers the row) opens the scene with those bands."""
    from icpd.apps.infer.ray_runner import _open

    path = write_tif(tmp_path / "nir.tif", scene(40, 50, seed=1), extra_band=True)
    source = _open(str(path), [2, 3, 4])
    try:
        assert Path(source.path) == path and source.read(0, 0, 40, 50).shape == (40, 50, 3)
        np.testing.assert_array_equal(source.read(0, 0, 40, 50), scene(40, 50, seed=1))
    finally:
        source.close()
