"""Checkpoint formats told apart by their bytes (defect 1), provenance without module attributes,
and seeded models that leave the caller's random stream alone (defect 8)."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from icpd.model.checkpoint import (
    CheckpointError,
    is_safetensors,
    load_checkpoint,
    load_checkpoint_with_info,
    save_checkpoint,
    seeded_model,
)


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_legacy_torch_format_loads_with_weights_only(tiny_model, tmp_path):
    """Guards defect 1: a .pt in torch's legacy (non-zip) format was taken for safetensors
    (its first 8 bytes are not "PK") and failed with "header too large"."""
    path = tmp_path / "legacy.pt"
    torch.save(tiny_model.state_dict(), path, _use_new_zipfile_serialization=False)
    assert not path.read_bytes().startswith(b"PK") and not is_safetensors(path)
    assert _same_weights(load_checkpoint(path, preset="tiny"), tiny_model)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_legacy_format_with_a_pickled_object_is_refused_clearly(tmp_path, capsys):
    """A legacy-format file holding an arbitrary object: the weights_only refusal (nothing
    executed), not a safetensors error."""
    path = tmp_path / "legacy_obj.pt"
    torch.save({"x": _Evil()}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, preset="tiny")
    assert "header too large" not in str(err.value).lower() and "safetensors" not in str(err.value)
    assert "weights_only" in str(err.value) and "pwned" not in capsys.readouterr().out


def test_safetensors_detected_by_header_whatever_the_name(tiny_model, tmp_path):
    path = tmp_path / "weights.bin"
    save_checkpoint(tiny_model, path, sidecar=False)
    assert is_safetensors(path) and not path.with_suffix(".json").exists()
    assert _same_weights(load_checkpoint(path), tiny_model)


def test_safetensors_name_without_the_header_is_refused(tiny_model, tmp_path):
    path = tmp_path / "m.safetensors"
    torch.save(tiny_model.state_dict(), path)  # a zip under a .safetensors name
    with pytest.raises(CheckpointError, match=r"m\.safetensors: not a safetensors file"):
        load_checkpoint(path)


def test_provenance_is_returned_not_attached(tiny_model, tmp_path):
    """Guards defect 8: ``checkpoint_info`` was set on the module after construction."""
    path = tmp_path / "m.safetensors"
    save_checkpoint(tiny_model, path, {"shot": 5})
    model, info = load_checkpoint_with_info(path)
    assert not hasattr(model, "checkpoint_info")
    assert info.path == str(path) and info.shot == 5 and info.meta["format"] == "icpd-checkpoint"
    assert load_checkpoint_with_info(path, shot=1)[1].shot == 1


def test_seeded_model_leaves_the_global_rng_alone():
    """Guards defect 8: seeded_model reseeded the global generator (every later draw of the
    caller changed with the seed)."""
    torch.manual_seed(1234)
    expected = torch.rand(4)
    torch.manual_seed(1234)
    a = seeded_model("tiny", seed=0)
    assert torch.equal(torch.rand(4), expected)
    assert _same_weights(a, seeded_model("tiny", seed=0))
    assert not _same_weights(a, seeded_model("tiny", seed=1))


def test_checkpoint_files_get_umask_permissions(tiny_model, tmp_path):
    old = os.umask(0o027)
    try:
        path = tmp_path / "m.safetensors"
        save_checkpoint(tiny_model, path)
    finally:
        os.umask(old)
    for f in (path, path.with_suffix(".json")):
        assert stat.S_IMODE(f.stat().st_mode) == 0o640, f
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]
