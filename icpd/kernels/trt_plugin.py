"""TensorRT (>= 10.9) AOT "quickly deployable" plugin ``icpd::NdcgPrior`` for the rank prior.

I/O contract (shared with the ONNX exporter, which imports these constants):

* ONNX node: ``op_type`` :data:`OP_TYPE` (``"NdcgPrior"``), attributes
  ``plugin_namespace="icpd"`` and ``plugin_version="1"`` (:data:`ONNX_ATTRIBUTES`); TensorRT's
  ONNX parser maps a node without a built-in importer to the plugin named by ``op_type`` with
  that version and namespace (the node's domain is not used for the lookup).
* inputs :data:`INPUT_NAMES`: ``query`` (N, Nq, C), ``support`` (N, Ns, C), ``relevance`` (N, Ns);
  all three float32, or all three float16; Ns <= 4096 and C <= 4032.
* output :data:`OUTPUT_NAMES`: ``prior`` (N, Nq) float32, the NDCG rule of
  ``icpd/kernels/plugin/ndcg_prior.h`` (stable ties by support index, 0 when nothing is relevant).
* no plugin attributes (AOT plugins do not serialise attributes anyway).

:func:`register_plugin` compiles the kernel to PTX (ISA pinned, see :mod:`icpd.kernels.build`)
and registers the shape/type descriptor, an autotune set (FP32 or FP16 inputs, linear) and the
AOT implementation, which hands TensorRT the kernel name, the PTX, the launch parameters and the
int32 scalars (n, nq, ns, c). Only an AOT implementation is defined, so TensorRT embeds the PTX in
the engine and the engine later runs without Python (``trtexec --loadEngine`` alone).

Importing this module imports nothing from TensorRT; :func:`register_plugin` does, and raises
:class:`TensorRTUnavailableError` when TensorRT (>= 10.9, with ``tensorrt.plugin``) is missing.
On JetPack 6 (TensorRT 10.3) use the C++ plugin in ``icpd/kernels/plugin`` instead.
"""

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from icpd.kernels import build, launch
from icpd.kernels.tensorrt import TensorRTUnavailableError

OP_TYPE = "NdcgPrior"  # ONNX op_type == TensorRT plugin name
PLUGIN_NAME = OP_TYPE
PLUGIN_NAMESPACE = "icpd"
PLUGIN_VERSION = "1"
PLUGIN_ID = f"{PLUGIN_NAMESPACE}::{PLUGIN_NAME}"  # tensorrt.plugin's "{namespace}::{name}"
INPUT_NAMES = ("query", "support", "relevance")
OUTPUT_NAMES = ("prior",)
ONNX_ATTRIBUTES = {"plugin_namespace": PLUGIN_NAMESPACE, "plugin_version": PLUGIN_VERSION}
MIN_TENSORRT = (10, 9)  # first release with tensorrt.plugin.aot_impl
# Dependent type combinations over (query, support, relevance, prior): all FP32, or FP16 in/FP32 out.
IO_TYPES = "FP32|FP16, FP32|FP16, FP32|FP16, FP32"

# TensorRT's plugin registry is process-global and refuses a second registration of one id, so
# the PTX arch registered in this process is remembered here to make register_plugin idempotent.
_registered: dict[str, str] = {}


@dataclass(frozen=True)
class PluginRegistration:
    """What :func:`register_plugin` registered."""

    plugin_id: str  # "icpd::NdcgPrior"
    ptx_arch: str  # compute_XX the PTX targets (the driver JITs it for the actual GPU)
    tensorrt_version: str  # tensorrt.__version__


def _parse_version(text: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _import_tensorrt_plugin() -> tuple[Any, Any]:
    """Import ``tensorrt`` and ``tensorrt.plugin`` or raise a :class:`TensorRTUnavailableError`."""
    advice = (
        f"The AOT plugin {PLUGIN_ID} needs TensorRT >= {MIN_TENSORRT[0]}.{MIN_TENSORRT[1]} with its "
        "Python package (pip install tensorrt, from NVIDIA's index). With an older TensorRT (JetPack 6 "
        "ships 10.3) build the C++ plugin in icpd/kernels/plugin and pass it to trtexec --dynamicPlugins."
    )
    try:
        import tensorrt as trt
    except (ImportError, OSError) as err:  # OSError: the wheel is there but its libraries are not
        raise TensorRTUnavailableError(f"TensorRT is not importable ({err}). {advice}") from err
    version = str(getattr(trt, "__version__", "0.0"))
    if _parse_version(version) < MIN_TENSORRT:
        raise TensorRTUnavailableError(f"Found TensorRT {version}, older than 10.9. {advice}")
    try:
        import tensorrt.plugin as trtp
    except (ImportError, OSError) as err:
        raise TensorRTUnavailableError(
            f"TensorRT {version} has no tensorrt.plugin ({err}). {advice}"
        ) from err
    return trt, trtp


# Symbolic expressions define __add__/__mul__ but not __radd__/__rmul__: keep them on the left.
def _mul(a: Any, b: Any) -> Any:
    return b * a if isinstance(a, int) and not isinstance(b, int) else a * b


def _add(a: Any, b: Any) -> Any:
    return b + a if isinstance(a, int) and not isinstance(b, int) else a + b


def aot_launch_values(
    n: Any, nq: Any, ns: Any, c: Any, dtype: Any, minimum: Callable[[Any, Any], Any]
) -> dict:
    """Launch values of the AOT implementation for ints or TensorRT symbolic expressions.

    Args:
        n, nq, ns, c: problem sizes; ints where the engine's shapes are build-time constants.
        dtype: input dtype (``trt.float16``, ``"float32"``, ...).
        minimum: ``tensorrt.plugin.min`` (for symbolic values).

    Returns:
        ``kernel_name``, ``grid_x``, ``block_x``, ``shared_mem`` (exact when ``ns`` is an int,
        else the bound of :func:`icpd.kernels.launch.shared_bytes_bound`), ``extra_args``
        ``(n, nq, ns, c)``.

    Raises:
        ValueError: when a constant size is outside the kernel's limits.
    """
    ints = {name: v for name, v in (("N", n), ("Nq", nq), ("Ns", ns), ("C", c)) if isinstance(v, int)}
    if ints:
        launch.check_problem(ints.get("N", 0), ints.get("Nq", 0), ints.get("Ns", 0), ints.get("C", 0))
    if isinstance(c, int) and c > launch.MAX_CHANNELS_ANY_SUPPORT and not isinstance(ns, int):
        raise ValueError(
            f"C = {c} channels with a run-time Ns can need more than {launch.MAX_SHARED_BYTES} B of shared "
            f"memory; use C <= {launch.MAX_CHANNELS_ANY_SUPPORT} or a fixed Ns."
        )
    if isinstance(ns, int):
        keys = launch.KEY_BYTES * launch.sort_size(ns)
    else:  # launch.shared_bytes_bound: TensorRT expressions cannot round up to a power of two
        keys = minimum(_mul(ns, 2 * launch.KEY_BYTES), launch.KEY_BYTES * launch.MAX_SUPPORT)
    shared_mem = _add(_add(keys, _mul(c, 4)), launch.SCRATCH_BYTES)
    return {
        "kernel_name": launch.kernel_name(dtype),
        "grid_x": _mul(n, nq),
        "block_x": launch.BLOCK_THREADS,
        "shared_mem": shared_mem,
        "extra_args": (n, nq, ns, c),
    }


def _constant_or_expr(expr: Any) -> Any:
    """A ShapeExpr's value as an int when it is a build-time constant, else the expression."""
    if getattr(expr, "is_fake", False):
        return expr
    return expr.constant_value() if expr.is_constant else expr


def register_plugin(cache_dir: str | os.PathLike, *, ptx_arch: str | None = None) -> PluginRegistration:
    """Compile the kernel to PTX and register ``icpd::NdcgPrior`` with ``tensorrt.plugin``.

    Call once per process before parsing an ONNX model with ``NdcgPrior`` nodes; later calls
    with the same ``ptx_arch`` return the first registration.

    Args:
        cache_dir: folder for the compiled PTX (see :func:`icpd.kernels.build.ptx_for`).
        ptx_arch: virtual arch of the PTX; default :func:`icpd.kernels.build.default_ptx_arch`
            (the lowest this nvcc offers, so the driver can JIT it for any newer GPU).

    Raises:
        TensorRTUnavailableError: TensorRT missing or older than 10.9.
        NvccNotFoundError, KernelBuildError: the PTX could not be built.
        RuntimeError: already registered in this process with another ``ptx_arch``.
    """
    trt, trtp = _import_tensorrt_plugin()
    arch = ptx_arch or build.default_ptx_arch()
    if PLUGIN_ID in _registered:
        if _registered[PLUGIN_ID] != arch:
            raise RuntimeError(
                f"{PLUGIN_ID} is already registered in this process with PTX for {_registered[PLUGIN_ID]}; "
                f"TensorRT cannot re-register it for {arch}. Start a new process."
            )
        return PluginRegistration(PLUGIN_ID, arch, str(trt.__version__))
    ptx = build.ptx_for(arch, cache_dir)
    _define_plugin(trt, trtp, ptx)
    _registered[PLUGIN_ID] = arch
    return PluginRegistration(PLUGIN_ID, arch, str(trt.__version__))


def _define_plugin(trt: Any, trtp: Any, ptx: str) -> None:
    # tensorrt.plugin reads these annotations, so they must be real objects (no postponed
    # evaluation in this module) and use typing.Tuple/List as NVIDIA's samples do.
    from typing import List, Tuple, Union  # noqa: UP035

    @trtp.register(PLUGIN_ID)
    def ndcg_prior_desc(
        query: trtp.TensorDesc, support: trtp.TensorDesc, relevance: trtp.TensorDesc
    ) -> trtp.TensorDesc:
        for name, desc, rank in (("query", query, 3), ("support", support, 3), ("relevance", relevance, 2)):
            if desc.ndim != rank:
                raise ValueError(f"{PLUGIN_ID}: {name} must have rank {rank}, got {desc.ndim}.")
        return trtp.from_shape_expr((query.shape_expr[0], query.shape_expr[1]), dtype=trt.float32)

    @trtp.autotune(PLUGIN_ID)
    def ndcg_prior_autotune(
        query: trtp.TensorDesc,
        support: trtp.TensorDesc,
        relevance: trtp.TensorDesc,
        outputs: Tuple[trtp.TensorDesc],  # noqa: UP006
    ) -> List[trtp.AutoTuneCombination]:  # noqa: UP006
        return [trtp.AutoTuneCombination(IO_TYPES, "LINEAR")]

    @trtp.aot_impl(PLUGIN_ID)
    def ndcg_prior_aot(
        query: trtp.TensorDesc,
        support: trtp.TensorDesc,
        relevance: trtp.TensorDesc,
        outputs: Tuple[trtp.TensorDesc],  # noqa: UP006
        tactic: int,
    ) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymExprs]:  # noqa: UP006, UP007
        n, nq, c = (_constant_or_expr(query.shape_expr[i]) for i in range(3))
        ns = _constant_or_expr(support.shape_expr[1])
        values = aot_launch_values(n, nq, ns, c, query.dtype, trtp.min)
        params = trtp.KernelLaunchParams()
        params.grid_x = values["grid_x"]
        params.block_x = values["block_x"]
        params.shared_mem = values["shared_mem"]
        extra_args = trtp.SymIntExprs.from_tuple([trtp.SymInt32(v) for v in values["extra_args"]])
        return values["kernel_name"].encode(), ptx.encode(), params, extra_args
