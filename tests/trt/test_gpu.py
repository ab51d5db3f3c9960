"""GPU and TensorRT checks (skipped here with the reason; run by scripts/gpu_check.sh on a GPU machine)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture()
def kernel_cache(tmp_path):
    """$ICPD_CACHE_DIR's kernel cache when set (scripts/gpu_check.sh builds the kernel there once), else tmp_path."""
    import os

    from icpd.kernels.cuda_op import default_cache_dir

    return default_cache_dir() if os.environ.get("ICPD_CACHE_DIR") else tmp_path


@pytest.mark.gpu
def test_cuda_op_matches_the_cpu_reference(kernel_cache):
    from icpd.kernels.cuda_op import ensure_cuda_op
    from icpd.model.rank_prior import ndcg_prior_op

    ensure_cuda_op(kernel_cache)
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float16):
        q = torch.randint(-3, 4, (2, 256, 64), generator=g).to(dtype)
        s = torch.randint(-3, 4, (2, 300, 64), generator=g).to(dtype)
        r = (torch.rand(2, 300, generator=g) < 0.3).to(dtype)
        got = torch.ops.icpd.ndcg_prior(q.cuda(), s.cuda(), r.cuda()).cpu()
        # integer features: exact distances, identical ranking; only the DCG summation order differs
        torch.testing.assert_close(got, ndcg_prior_op(q.float(), s.float(), r.float()), rtol=0, atol=2e-6)


@pytest.mark.gpu
def test_cuda_op_falls_back_beyond_the_kernel_limit(kernel_cache):
    from icpd.kernels.cuda_op import ensure_cuda_op
    from icpd.model.rank_prior import ndcg_prior_op

    ensure_cuda_op(kernel_cache)
    g = torch.Generator().manual_seed(1)
    q, s = torch.randint(-3, 4, (1, 8, 4), generator=g).float(), torch.randint(-3, 4, (1, 5000, 4), generator=g).float()
    r = (torch.rand(1, 5000, generator=g) < 0.3).float()
    got = torch.ops.icpd.ndcg_prior(q.cuda(), s.cuda(), r.cuda()).cpu()
    torch.testing.assert_close(got, ndcg_prior_op(q, s, r), rtol=0, atol=1e-5)


def _plugin_library_or_skip() -> str | None:
    """The C++ plugin library for TensorRT < 10.9 ($ICPD_PLUGIN_LIBRARY), None for the AOT plugin."""
    import os

    import tensorrt as trt

    from icpd.kernels.trt_plugin import MIN_TENSORRT
    from icpd.trt.build import tensorrt_major

    lib = os.environ.get("ICPD_PLUGIN_LIBRARY")
    minor = int(trt.__version__.split(".")[1])
    if lib is None and (tensorrt_major(trt.__version__), minor) < MIN_TENSORRT:
        pytest.skip(f"TensorRT {trt.__version__} has no AOT plugins: set ICPD_PLUGIN_LIBRARY to the C++ plugin "
                    "built with icpd/kernels/plugin/CMakeLists.txt")
    return lib


@pytest.mark.gpu
@pytest.mark.trt
@pytest.mark.parametrize("form", ["sort", "plugin"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_build_and_validate_engines(tiny_sort_dir, tiny_plugin_dir, tmp_path, precision, form):
    """Both forms TensorRT can build (the default topk form is refused by the static check)."""
    from icpd.apps.validate import validate_model
    from icpd.artifacts.engine_sidecar import read_sidecar
    from icpd.trt.build import build_engines

    model_dir = tiny_sort_dir if form == "sort" else tiny_plugin_dir
    library = _plugin_library_or_skip() if form == "plugin" else None
    res = build_engines(model_dir, tmp_path / "engines", precision=precision, batch=(1, 2, 2), shots=(1, 1, 3),
                        plugin_library=library)
    sidecar = read_sidecar(res.path)
    assert sidecar.precision == precision and set(sidecar.engines) == {"encoder", "matcher"}
    assert sidecar.rank_prior == form and sidecar.strongly_typed
    report = validate_model(model_dir, ("trt",), engine_dir=res.path, runs=2, device="cuda")
    trt = report.backends["trt"]
    assert trt.passed, trt.as_dict()


@pytest.mark.gpu
@pytest.mark.trt
def test_trt_backend_refuses_engines_of_another_model(tiny_sort_dir, tmp_path):
    import dataclasses

    from icpd.artifacts.engine_sidecar import EngineMismatchError, read_sidecar, write_sidecar
    from icpd.artifacts.model_dir import ModelDir
    from icpd.runtime.backends.trt import TrtBackend
    from icpd.trt.build import build_engines

    res = build_engines(tiny_sort_dir, tmp_path / "engines", precision="fp32", batch=(1, 1, 1), shots=(1, 1, 1))
    write_sidecar(res.path, dataclasses.replace(read_sidecar(res.path), model_fingerprint="0" * 64))
    with pytest.raises(EngineMismatchError, match="Rebuild them"):
        TrtBackend(ModelDir.open(tiny_sort_dir), res.path, "cuda")


@pytest.mark.gpu
@pytest.mark.trt
def test_trt_backend_runs_on_its_own_stream(tiny_sort_dir, tmp_path):
    from icpd.artifacts.model_dir import ModelDir
    from icpd.runtime.backends.trt import TrtBackend
    from icpd.trt.build import build_engines

    res = build_engines(tiny_sort_dir, tmp_path / "engines", precision="fp32", batch=(1, 1, 1), shots=(1, 1, 1))
    backend = TrtBackend(ModelDir.open(tiny_sort_dir), res.path, "cuda")
    assert backend.stream != torch.cuda.default_stream(backend.device)
    assert backend.encoder.stream is backend.stream and backend.matcher.stream is backend.stream
