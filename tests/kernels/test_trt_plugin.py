"""The TensorRT plugins: I/O contract, lean import, clear errors without TensorRT, AOT launch values,
and cheap consistency checks of the C++ IPluginV3 sources (which cannot be compiled here: no
TensorRT headers in this workplace)."""

import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from icpd.kernels import launch, trt_plugin

PLUGIN_DIR = Path(trt_plugin.__file__).parent / "plugin"


def _tensorrt_version() -> str | None:
    try:
        import tensorrt

        return str(tensorrt.__version__)
    except (ImportError, OSError):
        return None


TRT_VERSION = _tensorrt_version()
needs_trt = pytest.mark.skipif(
    TRT_VERSION is None or trt_plugin._parse_version(TRT_VERSION) < trt_plugin.MIN_TENSORRT,
    reason=f"TensorRT >= 10.9 Python package not importable (found {TRT_VERSION})",
)


def test_io_contract_constants():
    assert trt_plugin.OP_TYPE == "NdcgPrior"
    assert trt_plugin.PLUGIN_ID == "icpd::NdcgPrior"
    assert trt_plugin.ONNX_ATTRIBUTES == {"plugin_namespace": "icpd", "plugin_version": "1"}
    assert trt_plugin.INPUT_NAMES == ("query", "support", "relevance")
    assert trt_plugin.OUTPUT_NAMES == ("prior",)
    types_ = [t.strip() for t in trt_plugin.IO_TYPES.split(",")]
    assert types_ == ["FP32|FP16"] * 3 + ["FP32"]  # 3 inputs share a dtype, output always FP32


def test_cpp_plugin_uses_the_same_name_version_namespace():
    source = (PLUGIN_DIR / "NdcgPriorPlugin.cpp").read_text()
    assert f'kPLUGIN_NAME = "{trt_plugin.PLUGIN_NAME}"' in source
    assert f'kPLUGIN_VERSION = "{trt_plugin.PLUGIN_VERSION}"' in source
    assert f'kPLUGIN_NAMESPACE = "{trt_plugin.PLUGIN_NAMESPACE}"' in source


def test_cpp_plugin_defines_every_declared_method_and_the_loader_entry_points():
    header = (PLUGIN_DIR / "NdcgPriorPlugin.h").read_text()
    source = (PLUGIN_DIR / "NdcgPriorPlugin.cpp").read_text()
    for cls in ("NdcgPriorPlugin", "NdcgPriorPluginCreator"):
        body = re.search(rf"class {cls} :.*?\n}};", header, flags=re.DOTALL).group(0)
        declared = set(re.findall(r"(\w+)\([^;]*?\)(?: const)? noexcept override;", body, flags=re.DOTALL))
        assert declared, cls
        for method in declared:
            assert f"{cls}::{method}(" in source, f"{cls}::{method} declared but not defined"
    # What IPluginRegistry::loadLibrary / trtexec --dynamicPlugins look up in a V3 plugin library.
    assert re.search(
        r'extern "C" ICPD_PLUGIN_EXPORT nvinfer1::IPluginCreatorInterface\* const\* getCreators\(', source
    )
    assert re.search(r'extern "C" ICPD_PLUGIN_EXPORT void setLoggerFinder\(', source)
    assert source.count("{") == source.count("}") and header.count("{") == header.count("}")


def test_cpp_plugin_calls_the_c_abi_as_declared():
    header = (PLUGIN_DIR / "ndcg_prior.h").read_text()
    source = (PLUGIN_DIR / "NdcgPriorPlugin.cpp").read_text()
    for name in ("icpd_ndcg_prior_f32", "icpd_ndcg_prior_f16", "icpd_ndcg_prior_shared_bytes"):
        assert f"int {name}(" in header
        assert f"{name}(" in source


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_cmake_configuration_reaches_the_tensorrt_lookup(tmp_path):
    # CUDA language and CUDAToolkit are found here; TensorRT is not, and must be reported clearly.
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not found: CMake cannot enable CUDA")
    result = subprocess.run(
        ["cmake", "-S", str(PLUGIN_DIR), "-B", str(tmp_path / "b"), f"-DTENSORRT_ROOT={tmp_path / 'no_trt'}"],
        capture_output=True,
        text=True,
        check=False,
    )
    output = " ".join((result.stdout + result.stderr).split())  # CMake wraps long messages
    assert result.returncode != 0
    assert f"TensorRT not found under TENSORRT_ROOT={tmp_path / 'no_trt'}" in output
    assert "Could not find" not in output  # CUDAToolkit itself was found


def test_import_does_not_import_tensorrt():
    code = "import sys, icpd.kernels.trt_plugin; assert 'tensorrt' not in sys.modules, 'tensorrt imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_register_plugin_without_tensorrt_raises_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` raise ImportError
    with pytest.raises(trt_plugin.TensorRTUnavailableError, match=r"TensorRT >= 10\.9.*--dynamicPlugins"):
        trt_plugin.register_plugin(tmp_path)
    assert not list(tmp_path.iterdir())  # failed before compiling anything


def test_register_plugin_with_old_tensorrt_names_the_version(monkeypatch, tmp_path):
    fake = types.ModuleType("tensorrt")
    fake.__version__ = "10.3.0.30"
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    with pytest.raises(
        trt_plugin.TensorRTUnavailableError, match=r"Found TensorRT 10\.3\.0\.30, older than 10\.9"
    ):
        trt_plugin.register_plugin(tmp_path)


class FakeExpr:
    """Stands in for tensorrt.plugin's symbolic expressions: only +, *, // and trtp.min exist,
    and only with the expression on the left (they have no __radd__/__rmul__)."""

    def __init__(self, text: str):
        self.text = text

    def __add__(self, other):
        return FakeExpr(f"({self.text} + {_text(other)})")

    def __mul__(self, other):
        return FakeExpr(f"({self.text} * {_text(other)})")


def _text(v) -> str:
    return v.text if isinstance(v, FakeExpr) else str(v)


def fake_min(a, b):
    assert isinstance(a, FakeExpr) or isinstance(b, FakeExpr), "min of two ints must not reach trtp.min"
    return FakeExpr(f"min({_text(a)}, {_text(b)})")


def test_aot_values_with_constant_shapes_match_launch_config():
    values = trt_plugin.aot_launch_values(2, 1024, 1024, 512, "DataType.HALF", fake_min)
    cfg = launch.launch_config(2, 1024, 1024, 512, "float16")
    assert values == {
        "kernel_name": cfg.kernel_name,
        "grid_x": cfg.grid[0],
        "block_x": cfg.block[0],
        "shared_mem": cfg.shared_mem,
        "extra_args": cfg.scalars,
    }


def test_aot_values_with_dynamic_shapes_use_only_supported_operations():
    n, nq, ns = FakeExpr("N"), FakeExpr("Nq"), FakeExpr("Ns")
    values = trt_plugin.aot_launch_values(n, nq, ns, 768, "DataType.FLOAT", fake_min)
    assert values["kernel_name"] == "icpd_ndcg_prior_kernel_f32"
    assert values["grid_x"].text == "(N * Nq)"
    assert values["shared_mem"].text == "((min((Ns * 16), 32768) + 3072) + 256)"
    assert values["extra_args"] == (n, nq, ns, 768)
    values = trt_plugin.aot_launch_values(4, FakeExpr("Nq"), 256, FakeExpr("C"), "fp32", fake_min)
    assert values["grid_x"].text == "(Nq * 4)"
    assert values["shared_mem"].text == "(((C * 4) + 2048) + 256)"  # constant Ns: exact 8 * 256 keys


def test_aot_values_refuse_constant_sizes_outside_the_limits():
    with pytest.raises(ValueError, match="Ns = 5000"):
        trt_plugin.aot_launch_values(FakeExpr("N"), FakeExpr("Nq"), 5000, 64, "fp16", fake_min)
    with pytest.raises(ValueError, match="C = 4100 channels with a run-time Ns"):
        trt_plugin.aot_launch_values(1, 1, FakeExpr("Ns"), 4100, "fp16", fake_min)
    with pytest.raises(ValueError, match="float32 or float16"):
        trt_plugin.aot_launch_values(1, 1, 8, 8, "DataType.BF16", fake_min)


@pytest.mark.trt
@needs_trt
def test_register_plugin_registers_once(tmp_path):
    import tensorrt.plugin as trtp

    first = trt_plugin.register_plugin(tmp_path)
    assert first.plugin_id == "icpd::NdcgPrior"
    assert trt_plugin.register_plugin(tmp_path) == first  # idempotent within the process
    assert hasattr(trtp.op.icpd, "NdcgPrior")
