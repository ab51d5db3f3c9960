"""Launch parameters of the rank-prior (NDCG) CUDA kernel, as pure Python.

Shared by the TensorRT AOT plugin (:mod:`icpd.kernels.trt_plugin`) and any caller that launches
``icpd_ndcg_prior_kernel_{f32,f16}`` from PTX/cubin itself (cupy, a torch extension). The C
launchers in ``ndcg_prior.cu`` apply the same rules; ``tests/kernels`` checks that the constants
here match ``plugin/ndcg_prior.h`` and that :func:`shared_bytes` matches the compiled library.

Launch: 1-D grid of ``N * Nq`` blocks (block ``b`` is item ``b // Nq``, query pixel ``b % Nq``),
:data:`BLOCK_THREADS` threads, dynamic shared memory :func:`shared_bytes`; kernel arguments
``(q, s, rel, n, nq, ns, c, out)``: inputs, int32 scalars, outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_SUPPORT = 4096  # most support pixels per item (a 64x64 map); the sort lives in shared memory
BLOCK_THREADS = 256  # threads per block; the kernel is compiled with __launch_bounds__(256)
SCRATCH_BYTES = 256  # shared-memory scratch for block reductions, before the sort keys
KEY_BYTES = 8  # one sort key: 32 order-preserving distance bits, 32 index bits
MAX_SHARED_BYTES = 48 * 1024  # dynamic shared memory usable without cudaFuncSetAttribute opt-in
MAX_GRID_X = 2**31 - 1  # CUDA's limit on gridDim.x
MAX_CHANNELS_ANY_SUPPORT = (MAX_SHARED_BYTES - SCRATCH_BYTES - KEY_BYTES * MAX_SUPPORT) // 4  # 4032

KERNEL_NAMES = {"float32": "icpd_ndcg_prior_kernel_f32", "float16": "icpd_ndcg_prior_kernel_f16"}
LAUNCHER_NAMES = {"float32": "icpd_ndcg_prior_f32", "float16": "icpd_ndcg_prior_f16"}

_DTYPE_ALIASES = {
    "float32": "float32",
    "float": "float32",
    "fp32": "float32",
    "f32": "float32",
    "float16": "float16",
    "half": "float16",
    "fp16": "float16",
    "f16": "float16",
}


@dataclass(frozen=True)
class LaunchConfig:
    """Everything needed to launch the kernel once.

    ``scalars`` are the int32 kernel arguments placed between the input and output pointers.
    """

    kernel_name: str  # __global__ entry in the PTX/cubin
    launcher_name: str  # extern "C" host launcher in the shared library
    dtype: str  # "float32" or "float16": the dtype of q, s and rel; out is always float32
    grid: tuple[int, int, int]  # blocks
    block: tuple[int, int, int]  # threads per block
    shared_mem: int  # bytes of dynamic shared memory per block
    scalars: tuple[int, int, int, int]  # (n, nq, ns, c)


def normalize_dtype(dtype: Any) -> str:
    """Map a torch/numpy/TensorRT dtype or a name to ``"float32"`` or ``"float16"``.

    Raises:
        ValueError: for any other dtype (bfloat16 included), naming what is supported.
    """
    name = str(dtype).lower()
    for prefix in ("torch.", "datatype.", "dtype(", "<class 'numpy."):
        name = name.removeprefix(prefix)
    name = name.strip("')>\"")
    if name not in _DTYPE_ALIASES:
        raise ValueError(
            f"The rank-prior kernel takes float32 or float16 inputs, got {dtype!r}; "
            "cast query, support and relevance to one of them (the output is always float32)."
        )
    return _DTYPE_ALIASES[name]


def kernel_name(dtype: Any) -> str:
    """Name of the ``__global__`` entry for inputs of ``dtype``."""
    return KERNEL_NAMES[normalize_dtype(dtype)]


def sort_size(ns: int) -> int:
    """Bitonic sort length: the power of two >= ``ns`` (0 for ``ns = 0``)."""
    if ns < 0:
        raise ValueError(f"Number of support pixels must be >= 0, got {ns}.")
    return 0 if ns == 0 else 1 << (ns - 1).bit_length()


def check_problem(n: int, nq: int, ns: int, c: int) -> None:
    """Raise ``ValueError`` with the offending value when the kernel cannot take this problem.

    Args:
        n: items (batch x shots folded together).
        nq: query pixels per item.
        ns: support pixels per item; at most :data:`MAX_SUPPORT`.
        c: feature channels.
    """
    for name, value in (("N", n), ("Nq", nq), ("Ns", ns), ("C", c)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}.")
    if ns > MAX_SUPPORT:
        raise ValueError(
            f"Ns = {ns} support pixels exceeds the rank-prior kernel's limit of {MAX_SUPPORT} "
            "(a 64x64 support map): its sort keeps every distance in shared memory. Downsample the "
            "support features or use the PyTorch path (icpd.model.priors.rank_prior)."
        )
    need = SCRATCH_BYTES + KEY_BYTES * sort_size(ns) + 4 * c
    if need > MAX_SHARED_BYTES:
        raise ValueError(
            f"C = {c} channels with Ns = {ns} needs {need} B of shared memory per block, more than "
            f"{MAX_SHARED_BYTES} B; at most {MAX_CHANNELS_ANY_SUPPORT} channels fit for any Ns <= "
            f"{MAX_SUPPORT}. Reduce C (e.g. a 1x1 projection) before the prior."
        )
    if n * nq > MAX_GRID_X:
        raise ValueError(
            f"N * Nq = {n * nq} blocks exceeds CUDA's grid limit of {MAX_GRID_X}; split the batch."
        )


def shared_bytes(ns: int, c: int) -> int:
    """Exact dynamic shared memory of one block: scratch + ``8 * sort_size(ns)`` + ``4 * c`` bytes."""
    check_problem(0, 0, ns, c)
    return SCRATCH_BYTES + KEY_BYTES * sort_size(ns) + 4 * c


def shared_bytes_bound(ns: Any, c: Any, minimum: Any = min) -> Any:
    """An upper bound of :func:`shared_bytes` built only from ``+``, ``*`` and ``min``.

    TensorRT's symbolic shape expressions cannot round up to a power of two, so a plugin whose
    Ns is only known at run time allocates ``min(16 * Ns, 8 * MAX_SUPPORT) + 4 * C + scratch``
    (``sort_size(ns) < 2 * ns``). Pass ``minimum=tensorrt.plugin.min`` for symbolic ``ns``/``c``.
    For C <= :data:`MAX_CHANNELS_ANY_SUPPORT` the bound stays within :data:`MAX_SHARED_BYTES`.
    """
    return minimum(ns * (2 * KEY_BYTES), KEY_BYTES * MAX_SUPPORT) + c * 4 + SCRATCH_BYTES


def launch_config(n: int, nq: int, ns: int, c: int, dtype: Any) -> LaunchConfig:
    """Launch parameters for query ``(n, nq, c)``, support ``(n, ns, c)``, relevance ``(n, ns)``.

    Raises:
        ValueError: when ``ns > MAX_SUPPORT``, the shared memory does not fit, the grid is too
            large, or ``dtype`` is not float32/float16.
    """
    name = normalize_dtype(dtype)
    check_problem(n, nq, ns, c)
    return LaunchConfig(
        kernel_name=KERNEL_NAMES[name],
        launcher_name=LAUNCHER_NAMES[name],
        dtype=name,
        grid=(n * nq, 1, 1),
        block=(BLOCK_THREADS, 1, 1),
        shared_mem=shared_bytes(ns, c),
        scalars=(n, nq, ns, c),
    )
