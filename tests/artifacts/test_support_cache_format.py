"""Support cache files: written atomically with umask permissions, and their format/version
checked by the shared artefact check (icpd.artifacts.formats), naming the file and the fix."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
from safetensors.numpy import save_file

from icpd.artifacts.support_cache import SUPPORT_FORMAT_VERSION, SupportCacheError, SupportSet


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


def _rewrite_raw(path, raw: str) -> None:
    """Replace the cache's metadata text, keeping its tensors (what an editor of the header does)."""
    s = SupportSet.load(path)
    save_file(s.tensors, str(path), metadata={"icpd": raw})


def _rehashed(change):
    """An edit that also recomputes the content hash: only the schema can refuse it."""
    from icpd.artifacts.support_cache import content_hash

    def apply(meta, tensors):
        change(meta)
        meta["content_hash"] = content_hash(tensors, meta)
    return apply


@pytest.mark.parametrize(
    ("edit", "phrase"),
    [
        (lambda m, t: m.update(shots=5), "do not match its content hash"),
        (lambda m, t: m.update(class_name="plane"), "do not match its content hash"),
        (lambda m, t: m.update(images=["other.png"]), "do not match its content hash"),
        (lambda m, t: m.update(shots="two"), r'shots = "two" is not an integer >= 1'),
        (_rehashed(lambda m: m.update(class_name="  ")), r'class_name = "  " is not a non-empty string'),
        (_rehashed(lambda m: m.update(shots=0)), "shots = 0 is not an integer >= 1"),
        (lambda m, t: m.update(shot=m.pop("shots")), "lacks shots"),
        (lambda m, t: m.pop("dtype"), "dtype is missing"),
        (lambda m, t: m.update(format_version=1), "format version 1 is older than this icpd reads"),
    ],
)
def test_edited_metadata_is_refused_naming_the_file_and_the_fix(tmp_path, edit, phrase):
    """Guards issue 12: the header was not hashed (shots 2 -> 5 accepted) and a renamed key was a KeyError."""
    path = _support().save(tmp_path / "ship.support")
    s = SupportSet.load(path)
    meta = dict(s.meta)
    edit(meta, s.tensors)
    _rewrite_raw(path, json.dumps(meta))
    with pytest.raises(SupportCacheError, match=phrase) as err:
        SupportSet.load(path)
    assert str(path) in str(err.value) and "recreate it with `icpd cache-support`" in str(err.value)


def test_broken_metadata_json_names_the_file(tmp_path):
    path = _support().save(tmp_path / "ship.support")
    _rewrite_raw(path, '{"format": "icpd-support", "shots": ')
    with pytest.raises(SupportCacheError, match="metadata is not valid JSON") as err:
        SupportSet.load(path)
    assert str(path) in str(err.value) and "icpd cache-support" in str(err.value)


def test_extra_metadata_round_trips_under_the_hash(tmp_path):
    s = _support()
    s.meta.update(images=["a.png", "b.png"], backend="ort")
    loaded = SupportSet.load(s.save(tmp_path / "ship.support"))
    assert loaded.meta["images"] == ["a.png", "b.png"] and loaded.meta["backend"] == "ort"


def test_save_without_overwrite_never_replaces_a_file(tmp_path, monkeypatch):
    """Guards issue 20 (cache-support without --force, last writer won): ``overwrite=False`` keeps a
    file already there and one created while the cache was being written, with permissions and
    contents untouched, and leaves no temporary file; notes round-trip under the hash."""
    import safetensors.numpy

    path = tmp_path / "ship.support"
    path.write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="exists; it was left as it is") as err:
        _support().save(path, overwrite=False)
    assert err.value.filename == str(path) and path.read_bytes() == b"mine"
    path.unlink()
    real = safetensors.numpy.save_file

    def another_program_writes_meanwhile(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)
        path.write_bytes(b"theirs")

    monkeypatch.setattr(safetensors.numpy, "save_file", another_program_writes_meanwhile)
    with pytest.raises(FileExistsError, match="was created while this cache was being written; it was left as it is"):
        _support().save(path, overwrite=False)
    assert path.read_bytes() == b"theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["ship.support"]
    monkeypatch.setattr(safetensors.numpy, "save_file", real)
    path.unlink()
    s = _support()
    s.meta["notes"] = ["image a.png: 64x64 px (HxW) upscaled"]
    s.save(path, overwrite=False)
    assert SupportSet.load(path).notes == ["image a.png: 64x64 px (HxW) upscaled"]
