"""The rank-prior CUDA kernel against a plain-PyTorch CPU implementation of the rule (needs a GPU).

Features are small integers in most tests, so every distance is exact in FP32 (and in FP16
inputs) on both sides: the ranking must then agree exactly, ties included, and only the order of
the DCG sums differs (tolerance 2e-6). One test uses Gaussian features, where rounding can swap
near-equal distances; it bounds how often and by how much.

The shared library is driven through its C ABI (ctypes, torch tensors' pointers and stream); the
AOT path (PTX entry + launch.py parameters, as TensorRT launches it) is driven through cupy.
"""

import ctypes

import pytest
import torch

from icpd.kernels import build, launch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)"
    ),
]

PAPER_SIZES = [(1024, 512), (256, 1024), (256, 768), (64, 2048)]  # (Nq = Ns, C)


def ndcg_prior_reference(q: torch.Tensor, s: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
    """The rule, on the CPU in FP32: q (N, Nq, C), s (N, Ns, C), rel (N, Ns) -> (N, Nq) float32."""
    q, s, rel = q.float().cpu(), s.float().cpu(), rel.float().cpu()
    ns = s.shape[1]
    dist = (s * s).sum(-1)[:, None, :] - 2 * torch.bmm(q, s.transpose(1, 2))  # N Nq Ns
    order = torch.sort(dist, dim=-1, stable=True).indices  # ties: lower support index first
    relevant = (rel > 0).float()
    k = relevant.sum(-1)  # N
    rel_sorted = torch.gather(relevant[:, None, :].expand_as(dist), -1, order)
    positions = torch.arange(ns, dtype=torch.float32)
    weights = (1.0 / torch.log2(positions + 2.0))[None, :] * (positions[None, :] < k[:, None])  # N Ns
    dcg = (rel_sorted * weights[:, None, :]).sum(-1)
    idcg = weights.sum(-1, keepdim=True)
    return torch.where(k[:, None] > 0, dcg / idcg.clamp_min(1e-30), torch.zeros_like(dcg))


def kernel_cache_dir(tmp_path_factory):
    """$ICPD_CACHE_DIR's kernel cache when set (scripts/gpu_check.sh builds the kernel once there for
    every step), else a fresh folder."""
    import os

    from icpd.kernels.cuda_op import default_cache_dir

    return default_cache_dir() if os.environ.get("ICPD_CACHE_DIR") else tmp_path_factory.mktemp("kernel_cache")


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    try:
        kernel_build = build.compile_kernel(kernel_cache_dir(tmp_path_factory))
    except build.NvccNotFoundError as err:
        pytest.skip(str(err))
    lib = ctypes.CDLL(str(kernel_build.library))
    for name in ("icpd_ndcg_prior_f32", "icpd_ndcg_prior_f16"):
        fn = getattr(lib, name)
        fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int] * 4 + [ctypes.c_void_p]
        fn.restype = ctypes.c_int
    return lib


def run_kernel(lib, q: torch.Tensor, s: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
    n, nq, c = q.shape
    ns = s.shape[1]
    q, s, rel = (t.cuda().contiguous() for t in (q, s, rel))
    out = torch.full((n, nq), float("nan"), device="cuda")
    cfg = launch.launch_config(n, nq, ns, c, q.dtype)
    stream = torch.cuda.current_stream().cuda_stream
    status = getattr(lib, cfg.launcher_name)(
        q.data_ptr(), s.data_ptr(), rel.data_ptr(), out.data_ptr(), n, nq, ns, c, stream
    )
    assert status == 0, f"launcher returned cudaError {status}"
    torch.cuda.synchronize()
    return out.cpu()


def integer_problem(n, nq, ns, c, dtype, density=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(-3, 4, (n, nq, c), generator=g).to(dtype)
    s = torch.randint(-3, 4, (n, ns, c), generator=g).to(dtype)
    rel = (torch.rand(n, ns, generator=g) < density).to(dtype)
    return q, s, rel


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize(("size", "c"), PAPER_SIZES)
def test_paper_sizes_match_the_reference(library, size, c, dtype):
    q, s, rel = integer_problem(2, size, size, c, dtype)
    got = run_kernel(library, q, s, rel)
    torch.testing.assert_close(got, ndcg_prior_reference(q, s, rel), rtol=0, atol=2e-6)


def test_gaussian_features_fp32(library):
    g = torch.Generator().manual_seed(1)
    q, s = torch.randn(2, 1024, 512, generator=g), torch.randn(2, 1024, 512, generator=g)
    rel = (torch.rand(2, 1024, generator=g) < 0.3).float()
    diff = (run_kernel(library, q, s, rel) - ndcg_prior_reference(q, s, rel)).abs()
    # Rounding differs from the CPU's bmm, so near-equal distances can swap; each swap moves
    # the prior by at most one adjacent-weight difference over IDCG.
    assert (diff <= 2e-6).float().mean() > 0.99
    assert diff.max() < 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_no_relevant_pixel_gives_zero_and_all_relevant_gives_one(library, dtype):
    q, s, _ = integer_problem(2, 64, 256, 64, dtype)
    rel = torch.zeros(2, 256, dtype=dtype)
    rel[1] = 1.0
    got = run_kernel(library, q, s, rel)
    assert torch.equal(got[0], torch.zeros(64))
    assert torch.equal(got[1], torch.ones(64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_exact_ties_are_broken_by_support_index(library, dtype):
    n, nq, ns, c = 3, 32, 300, 16
    q, s, rel = integer_problem(n, nq, ns, c, dtype, density=0.5, seed=2)
    s[0] = s[0, :1].expand(ns, c)  # item 0: all support pixels identical -> pure index order
    s[1, 1::2] = s[1, 0::2]  # item 1: every pixel tied with its neighbour
    s[2] = 0  # item 2: all distances are zero
    rel[0] = 0
    rel[0, :5] = 1  # relevant pixels first in index order -> a perfect ranking
    got = run_kernel(library, q, s, rel)
    expected = ndcg_prior_reference(q, s, rel)
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-6)
    assert torch.equal(got[0], torch.ones(nq))


def test_largest_support_map(library):
    q, s, rel = integer_problem(1, 8, launch.MAX_SUPPORT, 64, torch.float32, seed=3)
    torch.testing.assert_close(
        run_kernel(library, q, s, rel), ndcg_prior_reference(q, s, rel), rtol=0, atol=2e-6
    )


def test_ptx_entry_with_launch_py_parameters(tmp_path):
    # The path TensorRT's AOT plugin takes: the pinned PTX, launched with launch.py's values,
    # once with the exact shared memory and once with the symbolic upper bound.
    cupy = pytest.importorskip("cupy", reason="cupy is needed to load PTX directly")
    ptx = tmp_path / "ndcg_prior.ptx"
    ptx.write_text(build.ptx_for(build.default_ptx_arch(), tmp_path))
    module = cupy.RawModule(path=str(ptx))
    n, nq, ns, c = 2, 256, 256, 768
    for dtype in (torch.float32, torch.float16):
        q, s, rel = integer_problem(n, nq, ns, c, dtype, seed=4)
        expected = ndcg_prior_reference(q, s, rel)
        cfg = launch.launch_config(n, nq, ns, c, dtype)
        kernel = module.get_function(cfg.kernel_name)
        for shared_mem in (cfg.shared_mem, launch.shared_bytes_bound(ns, c)):
            qd, sd, rd = (cupy.asarray(t.numpy()) for t in (q, s, rel))
            out = cupy.full((n, nq), float("nan"), dtype=cupy.float32)
            args = (qd, sd, rd, *(cupy.int32(v) for v in cfg.scalars), out)
            kernel(cfg.grid, cfg.block, args, shared_mem=shared_mem)
            got = torch.from_numpy(cupy.asnumpy(out))
            torch.testing.assert_close(got, expected, rtol=0, atol=2e-6)
        # Too little shared memory: the kernel's guard writes NaN instead of overrunning.
        out = cupy.zeros((n, nq), dtype=cupy.float32)
        kernel(cfg.grid, cfg.block, (qd, sd, rd, *(cupy.int32(v) for v in cfg.scalars), out), shared_mem=1024)
        assert bool(cupy.isnan(out).all())
