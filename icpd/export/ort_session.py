"""ONNX Runtime sessions for icpd's graphs: providers, the shared thread pool, the custom node.

Shared by the export's self-check (this layer) and the runtime's ONNX Runtime backend above it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from icpd.artifacts.model_dir import ModelDirError
from icpd.errors import ParamError, arg


def providers_for(device: str) -> list[str]:
    """Execution providers for ``device`` ("cpu" or "cuda[:N]"), refusing what is not installed."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise ParamError(
                f"{arg('device', device)}: ONNX Runtime has no CUDAExecutionProvider here (available: "
                f"{', '.join(available)}); pip install 'icpd[gpu]' (onnxruntime-gpu) or use "
                f"{arg('device', 'cpu')}"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device != "cpu":
        raise ParamError(f"{arg('device', repr(device))}: use 'cpu' or 'cuda[:N]'")
    return ["CPUExecutionProvider"]


# One intra-op thread pool for every session of the process, once asked for (see share_thread_pool).
_shared_pool = {"wanted": False, "made": False}


def share_thread_pool() -> None:
    """Run every icpd ONNX Runtime session of this process on one intra-op thread pool.

    By default each session (preprocess, encoder, matcher) has its own pool, whose threads keep
    spinning for a while after a run. On a small CPU the encoder's spinning threads then compete
    with the matcher that follows it on every query: paper preset, 2 cores, the first matcher
    call after the encoder took 135 and 158 ms with per-session pools and 109 ms with one shared
    pool (110 ms for the calls that follow it either way).

    The pool is made when the first icpd session is created, sized by that session's ``threads``
    (None: one per core). ONNX Runtime then requires *every* session of the process to use the
    shared pool, sessions created by other code included; so a library does not switch it on
    behind its users' backs: the ``icpd`` command does, for its own process. If ONNX Runtime was
    already in use in the process, the sessions keep pools of their own (nothing fails).
    """
    _shared_pool["wanted"] = True


def ort_session(path: str | os.PathLike[str], device: str = "cpu", threads: int | None = None,
                custom_ops: bool = False) -> Any:
    """An InferenceSession; ``custom_ops`` adds the CPU kernel of icpd's ``NdcgPrior`` node
    (plugin-form graphs; needs onnxruntime-extensions)."""
    import onnxruntime as ort

    if _shared_pool["wanted"] and not _shared_pool["made"]:
        ort.set_global_thread_pool_sizes(threads or 0, 1)
        _shared_pool["made"] = True
    opts = ort.SessionOptions()
    opts.use_per_session_threads = not _shared_pool["wanted"]
    if custom_ops:
        from icpd.kernels.ort_custom_op import register_ort_custom_op

        if device != "cpu":
            raise ParamError(f"{arg('device', device)}: the NdcgPrior node runs in ONNX Runtime only on the "
                             f"CPU; use {arg('backend', 'trt')}")
        opts.register_custom_ops_library(register_ort_custom_op())
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # the shared pool has its size (set above); setting it per session too makes ONNX Runtime warn
    # that it ignores it
    if threads and not _shared_pool["wanted"]:
        opts.intra_op_num_threads = threads
    provider_options = None
    providers = providers_for(device)
    if device.startswith("cuda:"):
        provider_options = [{"device_id": int(device.split(":")[1])}, {}]
    try:
        return ort.InferenceSession(str(Path(path)), sess_options=opts, providers=providers,
                                    provider_options=provider_options)
    except Exception as e:
        raise ModelDirError(f"{path}: ONNX Runtime cannot load it ({type(e).__name__}: {e}); "
                            "re-run `icpd export`") from e
