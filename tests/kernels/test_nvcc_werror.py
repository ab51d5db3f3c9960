"""`ICPD_NVCC_WERROR=0` (scripts/gpu_check.sh --no-werror) drops -Werror for a host compiler that warns
inside CUDA's headers; by default warnings are errors, as in CI."""

from __future__ import annotations

from icpd.kernels import build


def test_werror_is_on_by_default_and_off_with_the_switch(monkeypatch):
    monkeypatch.delenv(build.WERROR_ENV, raising=False)
    assert build.nvcc_flags() == build.NVCC_FLAGS
    assert "-Werror" in build.nvcc_flags() and "-Wall,-Wextra,-Werror,-fPIC" in build.nvcc_flags()
    monkeypatch.setenv(build.WERROR_ENV, "0")
    assert build.nvcc_flags() == ("-std=c++17", "-O3", "-Wno-deprecated-gpu-targets", "-Xcompiler",
                                  "-Wall,-Wextra,-fPIC")
    monkeypatch.setenv(build.WERROR_ENV, "1")
    assert build.nvcc_flags() == build.NVCC_FLAGS
