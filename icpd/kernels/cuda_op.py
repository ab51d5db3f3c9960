"""CUDA implementation of ``icpd::ndcg_prior``: the rank-prior kernel (``ndcg_prior.cu``) behind the torch op.

:func:`ensure_cuda_op` compiles the kernel's shared library with nvcc on first use (cached under
``cache_dir``, by default ``$ICPD_CACHE_DIR`` or ``~/.cache/icpd/kernels``), loads it with ctypes
and registers it for the CUDA dispatch key of the existing op (``icpd.model.rank_prior``). Calls
then launch ``icpd_ndcg_prior_{f32,f16}`` through the C ABI on torch's current stream, with the
tensors' device pointers. Problems beyond the kernel's limits (Ns > 4096, shared memory) and
dtypes other than float32/float16 fall back to the PyTorch path on the same GPU, so the op
never fails where the reference would not.

Nothing happens at import: the torch backend calls ``ensure_cuda_op()`` when it runs on CUDA.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from icpd.kernels import build, launch
from icpd.model.rank_prior import ndcg_prior_reference

# The op can be registered once per process; what was loaded is remembered here.
_state: dict[str, CudaOp] = {}


class CudaOpUnavailableError(RuntimeError):
    """No CUDA device, or the kernel could not be compiled or loaded."""


@dataclass(frozen=True)
class CudaOp:
    library: Path  # the loaded libicpd_ndcg_prior.so
    cubin_archs: tuple[str, ...]  # archs with native code in it
    ptx_arch: str  # PTX the driver JIT-compiles for other GPUs


def default_cache_dir() -> Path:
    from icpd.config import cache_root

    return cache_root() / "kernels"


def _load(library: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(library))
    for name in launch.LAUNCHER_NAMES.values():
        fn = getattr(lib, name)
        # (q, s, rel, out, n, nq, ns, c, stream) -> cudaError_t, as in plugin/ndcg_prior.h
        fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int] * 4 + [ctypes.c_void_p]
        fn.restype = ctypes.c_int
    return lib


def _make_impl(lib: ctypes.CDLL):
    def ndcg_prior_cuda(query: torch.Tensor, support: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
        """query (N, Nq, C), support (N, Ns, C), relevance (N, Ns) on one GPU -> (N, Nq) float32."""
        n, nq, c = query.shape
        ns = support.shape[1]
        dtype = query.dtype if query.dtype in (torch.float32, torch.float16) else None
        try:
            cfg = launch.launch_config(n, nq, ns, c, dtype) if dtype is not None else None
        except ValueError:  # beyond the kernel's limits: the PyTorch path has none
            cfg = None
        if cfg is None or n * nq == 0:
            return ndcg_prior_reference(query, support, relevance)
        q, s, r = (t.to(dtype).contiguous() for t in (query, support, relevance))
        out = torch.empty((n, nq), dtype=torch.float32, device=query.device)
        with torch.cuda.device(query.device):
            stream = torch.cuda.current_stream(query.device).cuda_stream
            status = getattr(lib, cfg.launcher_name)(q.data_ptr(), s.data_ptr(), r.data_ptr(), out.data_ptr(),
                                                     n, nq, ns, c, stream)
        if status != 0:
            raise RuntimeError(f"icpd::ndcg_prior CUDA kernel launch failed (cudaError {status}) for N={n}, Nq={nq}, "
                               f"Ns={ns}, C={c}, {dtype}")
        return out

    return ndcg_prior_cuda


def ensure_cuda_op(cache_dir: str | os.PathLike[str] | None = None) -> CudaOp:
    """Compile (once, cached), load and register the CUDA kernel for ``icpd::ndcg_prior``.

    Raises:
        CudaOpUnavailableError: no CUDA device, nvcc missing, or the build failed (message says which).
    """
    if "op" in _state:
        return _state["op"]
    if not torch.cuda.is_available():
        raise CudaOpUnavailableError("the rank-prior CUDA kernel needs a CUDA device and torch sees none")
    try:
        kb = build.compile_kernel(Path(cache_dir) if cache_dir else default_cache_dir())
    except (build.NvccNotFoundError, build.KernelBuildError) as err:
        raise CudaOpUnavailableError(f"could not build the rank-prior CUDA kernel: {err}") from err
    lib = _load(kb.library)
    torch.library.register_kernel("icpd::ndcg_prior", "cuda", _make_impl(lib))
    _state["op"] = CudaOp(kb.library, kb.cubin_archs, kb.ptx_arch)
    return _state["op"]
