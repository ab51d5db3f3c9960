"""The records of an `icpd infer` run: scene statistics come back as a new InputResult, the tile is
resolved by `for_model` (the model input unless set), InferOptions keeps its subclass through it, and the resume key
covers the same option names as before SceneOptions was split out (old manifests still resume)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from icpd.apps.infer.options import InferOptions, InputResult
from icpd.apps.infer.session import resume_key, scene_result
from icpd.apps.stream.pipeline import StreamOptions
from icpd.runtime.scene import SceneStats
from icpd.runtime.tiling import SceneOptions


def _outputs(counts: list[int], height: int, width: int, geo=None) -> SimpleNamespace:
    stats = SceneStats()
    stats.counts = np.asarray(counts, np.int64)
    return SimpleNamespace(stats=stats, source=SimpleNamespace(height=height, width=width), geo=geo)


def test_scene_result_returns_a_new_record_and_leaves_its_argument():
    before = InputResult(path="a.png", status="ok", height=4, width=5, tiles=1)
    # 20 pixels: 10 background, 4 "road", 2 "tree", 4 nodata (not counted by the stats)
    after = scene_result(before, _outputs([10, 4, 2], 4, 5), ["road", "tree"])
    assert after is not before
    assert (before.pixels, before.foreground, before.area) == ({}, {}, None)
    assert after.pixels == {"road": 4, "tree": 2, "nodata": 4}
    assert after.foreground == {"road": 0.2, "tree": 0.1}
    assert (after.area, after.area_unit) == (None, None)
    assert (after.path, after.height, after.width, after.tiles) == ("a.png", 4, 5, 1)


def test_for_model_resolves_the_tile_to_the_model_input_unless_set():
    assert SceneOptions().for_model(128).tile == 128
    assert SceneOptions(tile=256, overlap=16).for_model(128).tile == 256
    with pytest.raises(ValueError, match=r"^tile=40: the smallest useful tile for this model is 96 px"):
        SceneOptions(tile=40, overlap=8).for_model(384)


def test_for_model_keeps_infer_options_and_stream_checks_its_tile():
    resolved = InferOptions(save_probs=True).for_model(128)
    assert type(resolved) is InferOptions
    assert (resolved.tile, resolved.save_probs) == (128, True)
    with pytest.raises(ValueError, match=r"^tile=40: the smallest useful tile for this model is 96 px"):
        StreamOptions(scene=SceneOptions(tile=40, overlap=8)).for_model(384)
    resolved = StreamOptions(every=2, scene=SceneOptions(overlap=8)).for_model(384)
    assert (resolved.every, resolved.scene.tile, resolved.scene.overlap) == (2, 384, 8)


def test_resume_key_covers_the_same_option_names_as_before_the_split():
    predictor = SimpleNamespace(fingerprint="f" * 64, supports=[])
    key = resume_key(predictor, InferOptions(tile=256))
    assert list(key["options"]) == ["threshold", "tile", "overlap", "batch", "save_probs", "save_priors",
                                    "alpha", "bands"]
    assert key["options"]["tile"] == 256
    assert (key["model"], key["supports"]) == ("f" * 64, [])
