"""``SupportSet.loads``: a cache file's bytes (an upload to `icpd serve`) read with ``load``'s checks and words."""

from __future__ import annotations

import numpy as np
import pytest

from icpd.artifacts.support_cache import SupportCacheError, SupportSet


def _saved(tmp_path, fingerprint: str = "f" * 64):
    rng = np.random.default_rng(0)
    tensors = {"support_feat_clip": rng.standard_normal((1, 8, 4)).astype(np.float32),
               "class_embeddings": rng.standard_normal((15, 8)).astype(np.float32)}
    return SupportSet("ship", fingerprint, 1, tensors).save(tmp_path / "ship.support")


def test_loads_equals_load(tmp_path):
    path = _saved(tmp_path)
    a, b = SupportSet.load(path, "f" * 64), SupportSet.loads(path.read_bytes(), "f" * 64)
    assert (a.class_name, a.fingerprint, a.shots, a.meta) == (b.class_name, b.fingerprint, b.shots, b.meta)
    assert sorted(a.tensors) == sorted(b.tensors)
    for key in a.tensors:
        np.testing.assert_array_equal(a.tensors[key], b.tensors[key])


def _message(call) -> str:
    with pytest.raises(SupportCacheError) as info:
        call()
    return str(info.value)


@pytest.mark.parametrize("damage", ["fingerprint", "altered", "truncated"])
def test_loads_refuses_what_load_refuses_in_the_same_words(tmp_path, damage):
    path = _saved(tmp_path)
    data = path.read_bytes()
    fingerprint = "e" * 64 if damage == "fingerprint" else "f" * 64
    if damage == "altered":
        data = data[:-4] + bytes(4)  # the last tensor's bytes: the content hash no longer matches
    elif damage == "truncated":
        data = data[: len(data) // 2]
    path.write_bytes(data)
    from_file = _message(lambda: SupportSet.load(path, fingerprint))
    from_bytes = _message(lambda: SupportSet.loads(data, fingerprint, source="support 'x' (upload)"))
    assert from_file.startswith(f"support cache {path}")
    if damage == "truncated":  # the parsers' own words differ after the common part
        assert from_bytes.startswith("support 'x' (upload): unreadable or truncated (")
        assert from_bytes.endswith("); recreate it with `icpd cache-support`")
    else:
        assert from_bytes == from_file.replace(f"support cache {path}", "support 'x' (upload)")
