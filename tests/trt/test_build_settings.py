"""What `icpd build` asks of TensorRT's builder, on 10.x and 11.x: one strongly typed route, TF32 off,
the optimisation level, a timing cache beside the engines, build progress, a checked plugin load.

TensorRT is not installable here: ``fake_tensorrt`` stands in for the module and records the calls
(its names follow the documented Python API); the code under test, ``icpd.trt.build``, is the real one.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import icpd.trt
from icpd.artifacts.engine_sidecar import EngineEnv, read_sidecar
from icpd.cli import app
from icpd.trt import build
from tests.trt.fake_tensorrt import make_fake_tensorrt

VERSIONS = ["10.3.0.30", "11.1.0.8"]


@pytest.fixture()
def use_fake(monkeypatch):
    def install(version: str = "10.3.0.30"):
        trt = make_fake_tensorrt(version)
        monkeypatch.setattr(icpd.trt, "import_tensorrt", lambda: trt)
        monkeypatch.setattr(build, "current_env", lambda: EngineEnv(version, "Fake GPU", "9.0", "0" * 64))
        return trt

    return install


def calls(trt, name):
    return [c[1:] for c in trt.calls if c[0] == name]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_every_build_is_strongly_typed_with_tf32_cleared(use_fake, tiny_sort_dir, tmp_path, version, precision):
    """TF32 is on by default in both versions (NvInfer.h: "Enabled by default"); 11.x is always strongly
    typed, so before the fix its "fp32" engines ran in TF32, and 10.x FP16 used the weak FP16 flags."""
    trt = use_fake(version)
    res = build.build_engines(tiny_sort_dir, tmp_path / "e", precision=precision, batch=(1, 1, 2), shots=(1, 1, 2))
    strongly_typed = 1 << (1 if version.startswith("10.") else 0)
    assert calls(trt, "create_network") == [(strongly_typed,), (strongly_typed,)]
    assert calls(trt, "clear_flag") == [("TF32",), ("TF32",)]
    assert calls(trt, "set_flag") == []  # no BuilderFlag.FP16 / OBEY_PRECISION_CONSTRAINTS on any version
    assert all(trt.BuilderFlag.TF32 not in c.flags for c in trt.configs)
    parsed = [p for (p,) in calls(trt, "parse_from_file")]
    if precision == "fp16":  # the FP16 ONNX of icpd.export.fp16, converted into the engine dir's work folder
        assert [p.split("/")[-2:] for p in parsed] == [["fp16-model", "encoder.onnx"], ["fp16-model", "matcher.onnx"]]
    else:
        assert parsed == [str(tiny_sort_dir / "encoder.onnx"), str(tiny_sort_dir / "matcher.onnx")]
    assert read_sidecar(res.path).strongly_typed is True


def test_opt_level_and_timing_cache_beside_the_engines(use_fake, tiny_sort_dir, tmp_path):
    trt = use_fake()
    out = tmp_path / "e"
    res = build.build_engines(tiny_sort_dir, out, precision="fp32", opt_level=1)
    assert [c.builder_optimization_level for c in trt.configs] == [1, 1]
    assert read_sidecar(out).opt_level == 1 and res.sidecar.opt_level == 1
    # the matcher's build starts from what the encoder's added; the file holds both
    assert calls(trt, "create_timing_cache") == [(b"",), (b"H100+encoder.onnx",)]
    assert (out / "timing.cache").read_bytes() == b"H100+encoder.onnx+matcher.onnx"

    trt = use_fake()
    build.build_engines(tiny_sort_dir, out, precision="fp32", force=True)  # a rebuild loads it
    assert calls(trt, "create_timing_cache")[0] == (b"H100+encoder.onnx+matcher.onnx",)
    assert [c.builder_optimization_level for c in trt.configs] == [3, 3]  # not set: TensorRT's default
    assert read_sidecar(out).opt_level is None


def test_timing_cache_of_another_gpu_is_replaced(use_fake, tiny_sort_dir, tmp_path):
    trt = use_fake()
    cache = tmp_path / "shared.cache"
    cache.write_bytes(b"A100+old")
    lines: list[str] = []
    build.build_engines(tiny_sort_dir, tmp_path / "e", precision="fp32", timing_cache=cache, progress=lines.append)
    assert f"timing cache {cache}: made on another GPU or TensorRT; starting a fresh one" in lines
    assert calls(trt, "set_timing_cache")[:2] == [(b"A100+old", False), (b"", False)]
    assert cache.read_bytes() == b"H100+encoder.onnx+matcher.onnx"
    assert not (tmp_path / "e" / "timing.cache").exists()  # --timing-cache elsewhere: the engine dir holds none


def test_build_progress_comes_from_the_progress_monitor(use_fake, tiny_sort_dir, tmp_path):
    use_fake()
    lines: list[str] = []
    build.build_engines(tiny_sort_dir, tmp_path / "e", precision="fp32", progress=lines.append)
    per_engine = ["Building engine (2 steps)", "  Tactic selection (1 step)", "Building engine: 1/2",
                  "Building engine: 2/2"]
    assert [ln for ln in lines if not ln.startswith("Building engine: done in")] == [
        "building encoder.engine from encoder.onnx", *per_engine,
        "building matcher.engine from matcher.onnx", *per_engine]
    assert sum(ln.startswith("Building engine: done in ") and ln.endswith(" s") for ln in lines) == 2


def test_no_progress_monitor_where_tensorrt_has_none(use_fake, tiny_sort_dir, tmp_path):
    trt = use_fake()
    del trt.IProgressMonitor
    lines: list[str] = []
    build.build_engines(tiny_sort_dir, tmp_path / "e", precision="fp32", progress=lines.append)
    assert lines == ["building encoder.engine from encoder.onnx", "building matcher.engine from matcher.onnx"]
    assert all(c.progress_monitor is None for c in trt.configs)


def test_opt_level_is_checked(tiny_sort_dir, tmp_path):
    with pytest.raises(ValueError, match=r"^opt_level=6: choose 0 \(fastest build\) to 5") as err:
        build.build_engines(tiny_sort_dir, tmp_path / "e", opt_level=6)
    assert err.value.param == "opt_level"  # the library names its parameter; the CLI prints the flag
    res = CliRunner().invoke(app, ["build", "--model", str(tiny_sort_dir), "--out", str(tmp_path / "e"),
                                   "--opt-level", "-1"])
    assert res.exit_code == 2 and "error: --opt-level -1: choose 0 (fastest build) to 5" in res.output


def test_plugin_library_that_does_not_load_stops_the_build(use_fake, tiny_plugin_dir, tmp_path):
    """Before: the load_library result was ignored and the parser failed later on an unknown NdcgPrior node."""
    trt = use_fake()
    lib = tmp_path / "libicpd_ndcg_prior_plugin.so"
    lib.write_bytes(b"\x7fELF")
    trt.load_library_ok = False
    with pytest.raises(build.EngineBuildError) as err:
        build.build_engines(tiny_plugin_dir, tmp_path / "e", precision="fp32", plugin_library=lib)
    assert str(err.value).startswith(f"plugin_library={lib}: TensorRT 10.3.0.30 could not load this plugin library")
    assert "Rebuild it against TensorRT 10.3.0.30 with icpd/kernels/plugin/CMakeLists.txt" in str(err.value)
    assert not (tmp_path / "e").exists()

    trt.load_library_ok = True  # a loaded library, then a second build in the same process (already registered)
    build.build_engines(tiny_plugin_dir, tmp_path / "e", precision="fp32", plugin_library=lib)
    build.build_engines(tiny_plugin_dir, tmp_path / "e", precision="fp32", plugin_library=lib, force=True)
    assert calls(trt, "load_library") == [(str(lib),)] * 3


def test_load_plugin_library_names_the_library_the_version_and_the_fix(tmp_path):
    from icpd.kernels.tensorrt import PluginLibraryError, load_plugin_library

    trt = make_fake_tensorrt("11.1.0.8")
    with pytest.raises(PluginLibraryError,
                       match=r"^engines.json: plugin library /nowhere/lib.so: no such file; build it"):
        load_plugin_library(trt, trt.registry, "/nowhere/lib.so", what="engines.json: plugin library")
    lib = tmp_path / "lib.so"
    lib.write_bytes(b"")
    trt.load_library_ok = False
    with pytest.raises(PluginLibraryError, match=r"TensorRT 11\.1\.0\.8 could not load this plugin library"):
        load_plugin_library(trt, trt.registry, lib)
    trt.load_library_ok = True
    assert load_plugin_library(trt, trt.registry, lib).path == str(lib)
    assert load_plugin_library(trt, trt.registry, lib) is None  # registered already: fine, no handle


def test_cli_shows_build_progress_on_stderr_unless_quiet(use_fake, tiny_sort_dir, tmp_path):
    use_fake()
    args = ["build", "--model", str(tiny_sort_dir), "--out", str(tmp_path / "e"), "--precision", "fp32",
            "--opt-level", "1"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "build: building encoder.engine from encoder.onnx" in res.stderr
    assert "build: Building engine (2 steps)" in res.stderr and "build: Building engine: 2/2" in res.stderr
    assert f"wrote {tmp_path / 'e'}: encoder, matcher engines, fp32" in res.stdout
    res = CliRunner().invoke(app, [*args, "--force", "-q"])
    assert res.exit_code == 0 and "build:" not in res.stderr and res.stdout == ""
