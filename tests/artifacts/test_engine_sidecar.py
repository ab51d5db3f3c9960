"""Engine sidecar: round trip, and every field that must refuse stale engines (pure Python)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from icpd.artifacts.engine_sidecar import (
    SIDECAR_NAME,
    EngineEnv,
    EngineMismatchError,
    Sidecar,
    check_profile,
    check_sidecar,
    plugin_hash,
    read_sidecar,
    write_sidecar,
)

ENV = EngineEnv(tensorrt_version="10.13.0.35", gpu_name="NVIDIA Jetson AGX Orin", compute_capability="8.7",
                plugin_hash=plugin_hash())
FINGERPRINT = "ab" * 32


def sidecar(**changes) -> Sidecar:
    base = Sidecar(env=ENV, precision="fp16", rank_prior="plugin", batch=(1, 2, 4), shots=(1, 1, 5),
                   model_fingerprint=FINGERPRINT, engines={"encoder": {"name": "encoder.engine", "sha256": "0" * 64}},
                   plugin="aot")
    return dataclasses.replace(base, **changes)


def test_round_trip(tmp_path):
    s = sidecar()
    path = write_sidecar(tmp_path, s)
    assert path.name == SIDECAR_NAME
    assert read_sidecar(tmp_path) == s
    assert json.loads(path.read_text())["format"] == "icpd-engines"


def test_matching_environment_passes():
    check_sidecar(sidecar(), ENV, FINGERPRINT)


@pytest.mark.parametrize(
    ("field", "value", "phrase"),
    [
        ("tensorrt_version", "10.3.0.30", "TensorRT 10.13.0.35, running TensorRT 10.3.0.30"),
        ("gpu_name", "NVIDIA H100", "running on 'NVIDIA H100'"),
        ("compute_capability", "9.0", "compute capability 8.7, this GPU is 9.0"),
        ("plugin_hash", "f" * 64, "rank-prior plugin sources"),
    ],
)
def test_each_environment_field_refuses(field, value, phrase):
    current = dataclasses.replace(ENV, **{field: value})
    with pytest.raises(EngineMismatchError) as err:
        check_sidecar(sidecar(), current, FINGERPRINT, rebuild_hint="icpd build --model m --out e")
    assert phrase in str(err.value)
    assert "Rebuild them: `icpd build --model m --out e`" in str(err.value)


def test_plugin_hash_is_ignored_without_the_plugin():
    check_sidecar(sidecar(rank_prior="onnx", plugin=""), dataclasses.replace(ENV, plugin_hash="f" * 64), FINGERPRINT)


def test_model_fingerprint_refuses():
    with pytest.raises(EngineMismatchError, match="built from model abababababab..., the model dir holds cdcdcdcdcdcd"):
        check_sidecar(sidecar(), ENV, "cd" * 32)


def test_all_mismatches_are_listed_together():
    current = EngineEnv("11.4.0", "NVIDIA H200", "9.0", "0" * 64)
    with pytest.raises(EngineMismatchError) as err:
        check_sidecar(sidecar(), current, "cd" * 32)
    assert str(err.value).count(";") == 4  # five problems


def test_plugin_hash_tracks_the_kernel_sources(tmp_path):
    import shutil

    from icpd.artifacts import engine_sidecar as mod

    kernels = tmp_path / "kernels"
    shutil.copytree(mod._KERNELS, kernels)
    assert plugin_hash(kernels) == plugin_hash()
    (kernels / "ndcg_prior.cu").write_text((kernels / "ndcg_prior.cu").read_text() + "\n// changed\n")
    assert plugin_hash(kernels) != plugin_hash()


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (None, "engines.json is missing"),
        ("{not json", "not valid JSON"),
        (json.dumps({"format": "other"}), "not an icpd engine sidecar"),
        (json.dumps({"format": "icpd-engines", "format_version": 99}), "newer than this icpd"),
        (json.dumps({"format": "icpd-engines", "format_version": 1, "precision": "fp16"}), "incomplete"),
    ],
)
def test_unreadable_sidecars_say_rebuild(tmp_path, content, phrase):
    if content is not None:
        (tmp_path / SIDECAR_NAME).write_text(content)
    with pytest.raises(EngineMismatchError, match=phrase):
        read_sidecar(tmp_path)


def test_profile_bounds():
    check_profile(sidecar(), batch=4, shots=1)
    with pytest.raises(ValueError, match="batch 5 is outside the engines' profile 1..4"):
        check_profile(sidecar(), batch=5, shots=1)
    with pytest.raises(ValueError, match="shots 6 is outside"):
        check_profile(sidecar(), batch=1, shots=6)


def test_rank_prior_is_a_form_parsed_once(tmp_path):
    """The plugin check compares RankPriorForm members: the file's text is parsed on reading, an older
    sidecar's "onnx" is topk (no plugin hash to check), and a form icpd does not know is refused instead of
    silently skipping the plugin check."""
    from icpd.config import RankPriorForm

    stale = dataclasses.replace(ENV, plugin_hash="f" * 64)
    write_sidecar(tmp_path, sidecar())
    assert json.loads((tmp_path / SIDECAR_NAME).read_text())["rank_prior"] == "plugin"
    read = read_sidecar(tmp_path)
    assert read.rank_prior is RankPriorForm.PLUGIN
    with pytest.raises(EngineMismatchError, match="rank-prior plugin sources"):
        check_sidecar(read, stale, FINGERPRINT)

    d = sidecar().as_dict()
    (tmp_path / SIDECAR_NAME).write_text(json.dumps({**d, "rank_prior": "onnx", "plugin": ""}))
    old = read_sidecar(tmp_path)
    assert old.rank_prior is RankPriorForm.TOPK
    check_sidecar(old, stale, FINGERPRINT)

    (tmp_path / SIDECAR_NAME).write_text(json.dumps({**d, "rank_prior": "Plugin"}))
    with pytest.raises(EngineMismatchError) as err:
        read_sidecar(tmp_path)
    assert str(err.value) == (f"{tmp_path / SIDECAR_NAME}: engine sidecar has rank_prior='Plugin': choose one of "
                              "topk, sort, plugin (onnx is the old name of topk); rebuild the engines with "
                              "`icpd build`")
