"""ONNX Runtime (CPU) implementation of the ``icpd.NdcgPrior`` custom node, for plugin-form graphs.

A matcher exported with ``--rank-prior plugin`` holds one ``NdcgPrior`` node (domain ``icpd``)
per rank prior, meant for the TensorRT plugin. ONNX Runtime has no kernel for it; this module
gives it one through onnxruntime-extensions' Python custom ops (``onnx_op``), computing the
node with ``icpd.model.rank_prior.ndcg_prior_reference`` (the PyTorch CPU reference of
``icpd::ndcg_prior``), so the plugin-form graph can be run and compared with the standard form on any
machine.

    Predictor.load(plugin_model_dir, backend="ort")  # registers the op once per process

Python custom ops run under the GIL and copy their outputs through lists: this is for checks,
not for speed. Needs ``pip install onnxruntime-extensions``.
"""

from __future__ import annotations

import numpy as np

from icpd.kernels.trt_plugin import OP_TYPE, PLUGIN_NAMESPACE

DOMAIN = "icpd"  # the ONNX domain the exporter writes (icpd.export.rank_prior_onnx.PLUGIN_DOMAIN)
# onnxruntime-extensions' Python ops are global to the process and cannot be registered twice.
_registered: list[str] = []


class OrtExtensionsUnavailableError(RuntimeError):
    """onnxruntime-extensions is not installed."""


def ndcg_prior_numpy(query: np.ndarray, support: np.ndarray, relevance: np.ndarray) -> np.ndarray:
    """query (N, Nq, C), support (N, Ns, C), relevance (N, Ns) -> (N, Nq) float32 (the op's CPU reference)."""
    import torch

    from icpd.model.rank_prior import ndcg_prior_reference

    q, s, r = (torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
               for a in (query, support, relevance))
    with torch.no_grad():
        return ndcg_prior_reference(q, s, r).numpy().astype(np.float32, copy=False)


def register_ort_custom_op() -> str:
    """Register the CPU ``icpd.NdcgPrior`` with onnxruntime-extensions; returns its library path.

    Raises:
        OrtExtensionsUnavailableError: onnxruntime-extensions is missing.
    """
    try:
        from onnxruntime_extensions import PyCustomOpDef, get_library_path, onnx_op
    except ImportError as err:
        raise OrtExtensionsUnavailableError(
            f"running the plugin-form matcher (NdcgPrior nodes) in ONNX Runtime needs onnxruntime-extensions "
            f"({err}); pip install onnxruntime-extensions, or export the standard form instead "
            "(`icpd export --rank-prior topk`)"
        ) from err
    if not _registered:
        f32 = PyCustomOpDef.dt_float

        @onnx_op(
            op_type=f"{DOMAIN}::{OP_TYPE}",
            inputs=[f32, f32, f32],
            outputs=[f32],
            attrs={"plugin_namespace": PyCustomOpDef.dt_string, "plugin_version": PyCustomOpDef.dt_string},
        )
        def ndcg_prior_node(query, support, relevance, plugin_namespace=PLUGIN_NAMESPACE, plugin_version="1"):
            return ndcg_prior_numpy(query, support, relevance)

        _registered.append(OP_TYPE)
    return get_library_path()
