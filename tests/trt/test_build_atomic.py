"""`icpd build` writes its engines and engines.json into a temporary folder renamed at the end:
a failed build leaves no half-built engine dir and keeps the previous one.

TensorRT is not installable here, so its two entry points (the import, the engine builder) are
replaced by stand-ins that write or fail; the folder handling under test is the real one."""

from __future__ import annotations

import pytest

import icpd.trt
from icpd.artifacts.engine_sidecar import EngineEnv, read_sidecar
from icpd.trt import build


@pytest.fixture()
def fake_tensorrt(monkeypatch):
    built = []

    def fake_build_engine(trt, onnx_path, out_path, *args, **kwargs):
        out_path.write_bytes(b"engine for " + onnx_path.name.encode())
        built.append(out_path.name)
        if getattr(trt, "fail_on", None) == out_path.name:
            raise build.EngineBuildError(f"TensorRT failed to build {out_path.name}")

    trt = type("FakeTrt", (), {"fail_on": None})()
    monkeypatch.setattr(icpd.trt, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(build, "current_env", lambda: EngineEnv("10.3.0", "Fake GPU", "8.7", "0" * 64))
    monkeypatch.setattr(build, "build_engine", fake_build_engine)
    return trt, built


def test_successful_build_appears_complete(tiny_plugin_dir, tmp_path, fake_tensorrt):
    out = tmp_path / "engines"
    res = build.build_engines(tiny_plugin_dir, out, precision="fp32")
    assert res.path == out
    assert sorted(p.name for p in out.iterdir()) == ["encoder.engine", "engines.json", "matcher.engine"]
    assert read_sidecar(out).engines["matcher"]["bytes"] == (out / "matcher.engine").stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == ["engines"]  # no temporary folder, no kernel cache left


def test_failed_build_leaves_nothing_and_keeps_the_previous_engines(tiny_plugin_dir, tmp_path, fake_tensorrt):
    trt, built = fake_tensorrt
    out = tmp_path / "engines"
    trt.fail_on = "matcher.engine"
    with pytest.raises(build.EngineBuildError, match="matcher.engine"):
        build.build_engines(tiny_plugin_dir, out, precision="fp32")
    assert built == ["encoder.engine", "matcher.engine"] and list(tmp_path.iterdir()) == []

    trt.fail_on = None
    build.build_engines(tiny_plugin_dir, out, precision="fp32")
    before = read_sidecar(out).build_seconds
    trt.fail_on = "encoder.engine"
    with pytest.raises(build.EngineBuildError):
        build.build_engines(tiny_plugin_dir, out, precision="fp32", force=True)
    assert read_sidecar(out).build_seconds == before  # the old engines are untouched
    assert [p.name for p in tmp_path.iterdir()] == ["engines"]
