"""nvcc builds of the rank-prior kernel: archs, warnings as errors, PTX entry points, the C ABI.

Everything here runs without a GPU: nvcc compiles, and the shared library's host-side argument
checks return before touching a device. Skipped with the reason when nvcc is absent.
"""

import ctypes
import re
import shutil

import pytest

from icpd.kernels import build, launch

try:
    NVCC = build.find_nvcc()
except build.NvccNotFoundError:  # pragma: no cover - depends on the machine
    NVCC = None
needs_nvcc = pytest.mark.skipif(
    NVCC is None, reason="nvcc not found (install the CUDA toolkit or set CUDA_HOME)"
)

CUDA_ERROR_INVALID_VALUE = 1


@pytest.fixture(scope="module")
def kernel_build(tmp_path_factory):
    if NVCC is None:
        pytest.skip("nvcc not found")
    return build.compile_kernel(tmp_path_factory.mktemp("kernel_cache"))


@pytest.fixture(scope="module")
def ptx_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ptx_cache")


@pytest.fixture(scope="module")
def library(kernel_build):
    lib = ctypes.CDLL(str(kernel_build.library))
    lib.icpd_ndcg_prior_shared_bytes.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.icpd_ndcg_prior_shared_bytes.restype = ctypes.c_int
    for name in ("icpd_ndcg_prior_f32", "icpd_ndcg_prior_f16"):
        fn = getattr(lib, name)
        fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int] * 4 + [ctypes.c_void_p]
        fn.restype = ctypes.c_int
    return lib


@needs_nvcc
def test_library_holds_a_cubin_for_every_arch_this_nvcc_offers(kernel_build):
    codes = build.supported_codes()
    expected = tuple(a for a in build.CUBIN_ARCHS if a in codes)
    assert kernel_build.cubin_archs == expected
    assert set(kernel_build.skipped) == set(build.CUBIN_ARCHS) - set(expected)
    for arch, why in kernel_build.skipped.items():
        assert arch in why
    if build.nvcc_version() >= (13, 0):
        assert kernel_build.ptx_arch == "compute_75"  # CUDA 13 dropped compute_72
    entries = build.fatbin_entries(kernel_build.fatbin.read_bytes())
    assert sorted(arch for kind, arch in entries if kind == "elf") == sorted(int(a[3:]) for a in expected)
    assert ("ptx", int(kernel_build.ptx_arch.split("_")[1])) in entries
    assert "-Werror" in kernel_build.command and "all-warnings" in kernel_build.command
    assert "-Wall,-Wextra,-Werror,-fPIC" in kernel_build.command


@needs_nvcc
def test_rebuild_is_served_from_the_cache(kernel_build):
    before = kernel_build.library.stat().st_mtime_ns
    again = build.compile_kernel(kernel_build.library.parent.parent)
    assert again.library == kernel_build.library
    assert again.library.stat().st_mtime_ns == before


@needs_nvcc
def test_sm72_on_nvcc13_is_refused_with_the_jetpack5_advice(tmp_path):
    """Xavier (sm_72) cannot be built by CUDA 13: the build says to use JetPack 5's nvcc (CMake)."""
    if build.nvcc_version() < (13, 0):
        pytest.skip("this nvcc still targets sm_72")
    with pytest.raises(build.KernelBuildError, match=r"sm_72 \(Jetson Xavier\) needs JetPack 5's nvcc.*CMakeLists"):
        build.compile_kernel(tmp_path, archs=("sm_72", "sm_87"))
    assert not any(tmp_path.iterdir())  # refused before nvcc ran


@needs_nvcc
def test_strict_build_refuses_archs_nvcc_cannot_target(tmp_path):
    missing = [a for a in build.CUBIN_ARCHS if a not in build.supported_codes()]
    if not missing:
        pytest.skip("this nvcc targets every listed arch")
    with pytest.raises(build.KernelBuildError, match=missing[0]):
        build.compile_kernel(tmp_path, archs=(missing[0],), strict=True)


@needs_nvcc
def test_a_warning_fails_the_build_and_outputs_stay_in_the_cache(tmp_path):
    sources = build.SOURCE.parent
    snapshot = sorted((p.name, p.stat().st_mtime_ns) for p in sources.rglob("*"))
    copy = tmp_path / "src"
    (copy / "plugin").mkdir(parents=True)
    shutil.copy(build.HEADER, copy / "plugin" / build.HEADER.name)
    source = copy / build.SOURCE.name
    source.write_text(
        build.SOURCE.read_text()
        + '\nextern "C" __global__ void icpd_probe(int* o) { int unused_probe; o[0] = 1; }\n'
    )
    with pytest.raises(build.KernelBuildError, match="unused_probe"):
        build.compile_kernel(tmp_path / "cache", archs=("sm_80",), source=source)
    build.ptx_for("compute_80", tmp_path / "cache")
    assert sorted((p.name, p.stat().st_mtime_ns) for p in sources.rglob("*")) == snapshot


def _entry_params(ptx: str, name: str) -> list[str]:
    match = re.search(rf"\.visible \.entry {name}\((.*?)\)", ptx, flags=re.DOTALL)
    assert match, f"no entry {name} in the PTX"
    return [re.match(r"\s*\.param \.(\w+)", p).group(1) for p in match.group(1).split(",")]


@needs_nvcc
def test_ptx_has_both_entries_with_the_aot_parameter_order(ptx_cache):
    ptx = build.ptx_for(build.default_ptx_arch(), ptx_cache)
    # inputs (q, s, rel), int32 scalars (n, nq, ns, c), outputs (out): TensorRT AOT order.
    for dtype in ("float32", "float16"):
        assert _entry_params(ptx, launch.KERNEL_NAMES[dtype]) == ["u64"] * 3 + ["u32"] * 4 + ["u64"]
    assert re.search(rf"^\.version {re.escape(build.PTX_ISA)}$", ptx, flags=re.MULTILINE)
    assert f".target sm_{build.default_ptx_arch().split('_')[1]}" in ptx
    assert ".maxntid 256, 1, 1" in ptx
    assert "call" not in ptx  # self-contained: nothing to link when TensorRT loads it
    assert "%dynamic_smem_size" in ptx  # the kernel's shared-memory guard


@needs_nvcc
@pytest.mark.parametrize(("arch", "isa"), [("compute_87", "7.4"), ("sm_89", "7.8"), (90, "7.8")])
def test_ptx_isa_is_pinned_to_what_the_arch_needs(ptx_cache, arch, isa):
    ptx = build.ptx_for(arch, ptx_cache)
    assert re.search(rf"^\.version {re.escape(isa)}$", ptx, flags=re.MULTILINE)
    assert re.search(rf"^\.target sm_{str(arch)[-2:]}$", ptx, flags=re.MULTILINE)


@needs_nvcc
def test_ptx_for_an_arch_nvcc_dropped_says_so(ptx_cache):
    if "compute_72" in build.supported_codes():
        pytest.skip("this nvcc still targets compute_72")
    with pytest.raises(build.KernelBuildError, match=r"compute_72.*compute_75"):
        build.ptx_for("sm_72", ptx_cache)


def test_pin_ptx_isa_only_lowers():
    ptx = "//\n.version 9.0\n.target sm_75\n"
    assert build._pin_ptx_isa(ptx, "7.4") == "//\n.version 7.4\n.target sm_75\n"
    assert build._pin_ptx_isa(".version 7.0\n", "7.4") == ".version 7.0\n"
    with pytest.raises(build.KernelBuildError):
        build._pin_ptx_isa(".target sm_75\n", "7.4")


def test_fatbin_parser_rejects_other_files():
    with pytest.raises(ValueError, match="Not a CUDA fatbin"):
        build.fatbin_entries(b"\x7fELF" + bytes(60))


def test_missing_nvcc_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "no_cuda"))
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setattr(build, "_DEFAULT_CUDA_HOMES", ())
    with pytest.raises(build.NvccNotFoundError, match=r"nvcc .*not found.*no_cuda/bin/nvcc.*CUDA_HOME"):
        build.find_nvcc()
    with pytest.raises(build.NvccNotFoundError):
        build.compile_kernel(tmp_path / "cache")


def test_cuda_home_is_searched(monkeypatch, tmp_path):
    fake = tmp_path / "cuda" / "bin" / "nvcc"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "cuda"))
    assert build.find_nvcc() == fake


@needs_nvcc
def test_c_abi_shared_bytes_matches_launch_py(library):
    for ns in (0, 1, 2, 3, 63, 64, 65, 255, 256, 1000, 1024, 2049, 4095, 4096, 4097, 10000):
        for c in (0, 1, 512, 768, 1024, 2048, 4032, 4033, 12000):
            try:
                expected = launch.shared_bytes(ns, c)
            except ValueError:
                expected = -1
            assert library.icpd_ndcg_prior_shared_bytes(ns, c) == expected, (ns, c)


@needs_nvcc
@pytest.mark.parametrize("launcher", ["icpd_ndcg_prior_f32", "icpd_ndcg_prior_f16"])
def test_c_abi_refuses_bad_problems_before_touching_the_device(library, launcher):
    fn = getattr(library, launcher)
    dummy = 16  # never dereferenced: every call below returns before the launch
    assert fn(dummy, dummy, dummy, dummy, 1, 16, 4097, 64, None) == CUDA_ERROR_INVALID_VALUE
    assert fn(dummy, dummy, dummy, dummy, 1, 16, 4096, 4033, None) == CUDA_ERROR_INVALID_VALUE
    assert fn(dummy, dummy, dummy, dummy, -1, 16, 64, 64, None) == CUDA_ERROR_INVALID_VALUE
    assert fn(dummy, dummy, dummy, None, 1, 16, 64, 64, None) == CUDA_ERROR_INVALID_VALUE  # no output
    assert fn(None, None, None, None, 0, 16, 64, 64, None) == 0  # empty batch: nothing to do
