"""Support cache files: written atomically with umask permissions, and their format/version
checked by the shared artefact check (icpd.io.artifacts), naming the file and the fix."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
from safetensors.numpy import save_file

from icpd.runtime.support_cache import SUPPORT_FORMAT_VERSION, SupportCacheError, SupportSet


def _support() -> SupportSet:
    rng = np.random.default_rng(0)
    tensors = {"support_feat_clip": rng.standard_normal((1, 8, 4)).astype(np.float32),
               "class_embeddings": rng.standard_normal((15, 8)).astype(np.float32)}
    return SupportSet("ship", "f" * 64, 1, tensors)


def test_save_is_atomic_with_umask_permissions_and_round_trips(tmp_path):
    old = os.umask(0o027)
    try:
        path = _support().save(tmp_path / "ship.support")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["ship.support"]  # no temporary file left
    loaded = SupportSet.load(path, "f" * 64)
    assert loaded.meta["format"] == "icpd-support" and loaded.meta["format_version"] == SUPPORT_FORMAT_VERSION
    assert np.array_equal(loaded.tensors["support_feat_clip"], _support().tensors["support_feat_clip"])


def _rewrite(path, change):
    s = SupportSet.load(path)
    meta = dict(s.meta)
    change(meta)
    save_file(s.tensors, str(path), metadata={"icpd": json.dumps(meta)})


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        (lambda m: m.update(format="icpd-model"), r"not an icpd support cache \(format 'icpd-model'"),
        (lambda m: m.update(format_version=99), "newer than this icpd reads"),
        (lambda m: m.update(format_version=0), "older than this icpd reads"),
        (lambda m: m.pop("class_name"), "lacks class_name"),
    ],
)
def test_foreign_newer_older_and_incomplete_caches_are_refused(tmp_path, change, phrase):
    path = _support().save(tmp_path / "ship.support")
    _rewrite(path, change)
    with pytest.raises(SupportCacheError, match=phrase) as err:
        SupportSet.load(path)
    assert str(path) in str(err.value) and "icpd cache-support" in str(err.value)
