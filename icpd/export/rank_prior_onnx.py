"""ONNX forms of ``icpd::ndcg_prior`` chosen at export time.

- ``standard``: plain opset-18 ops on the distance matrix the cosine prior's GEMM already gives
  (TopK(largest=0, sorted=1), Gather, masks), runnable by any ONNX runtime. ONNX TopK orders equal values by lower index first,
  which is icpd's tie rule. K = the largest k of the batch, computed in the graph.
- ``plugin``: one custom node ``NdcgPrior`` (domain ``icpd``) with attributes
  ``plugin_namespace="icpd"`` and ``plugin_version="1"``, which the TensorRT ONNX parser maps
  to the icpd plugin (see ``icpd.kernels.trt_plugin``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from icpd.kernels.trt_plugin import OP_TYPE, PLUGIN_NAMESPACE, PLUGIN_VERSION

PLUGIN_DOMAIN = "icpd"
RANK_PRIOR_FORMS = ("onnx", "plugin")


def register_plugin_schema() -> None:
    """Declare the custom node to onnx (the exporter refuses unknown ops without a schema)."""
    from onnx import defs

    if defs.has(OP_TYPE, PLUGIN_DOMAIN):
        return
    schema = defs.OpSchema(
        OP_TYPE,
        PLUGIN_DOMAIN,
        1,
        doc="icpd rank (NDCG) prior: query (N,Nq,C), support (N,Ns,C), relevance (N,Ns) -> (N,Nq) float32.",
        inputs=[
            defs.OpSchema.FormalParameter("query", "T"),
            defs.OpSchema.FormalParameter("support", "T"),
            defs.OpSchema.FormalParameter("relevance", "T"),
        ],
        outputs=[defs.OpSchema.FormalParameter("prior", "tensor(float)")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "feature type")],
        attributes=[
            defs.OpSchema.Attribute("plugin_namespace", defs.OpSchema.AttrType.STRING, "TensorRT plugin namespace"),
            defs.OpSchema.Attribute("plugin_version", defs.OpSchema.AttrType.STRING, "TensorRT plugin version"),
        ],
    )
    defs.register_schema(schema)


def _standard():
    """(from-distances translation, from-features translation) in opset-18 ops."""
    from onnxscript import opset18 as op

    def ints(*v: int):
        return op.Constant(value_ints=list(v))

    def f(x: float):
        return op.Constant(value_float=x)

    def ndcg_from_distances(dist, relevance):
        dist = op.Cast(dist, to=1)
        rel = op.Cast(op.Greater(op.Cast(relevance, to=1), f(0.0)), to=1)  # N Ns
        k = op.ReduceSum(rel, ints(1), keepdims=0)  # N
        kmax = op.Cast(op.ReduceMax(k, keepdims=1), to=7)  # (1,) int64
        _, order = op.TopK(dist, kmax, axis=-1, largest=0, sorted=1)  # N Nq kmax; ties: lower index first
        # relevance of the sorted positions: Gather from the flat (N*Ns) relevance with item offsets
        # (no (N, Nq, Ns) Expand: GatherElements would need one, it does not broadcast)
        shape = op.Shape(dist)
        n, ns = op.Slice(shape, ints(0), ints(1)), op.Slice(shape, ints(2), ints(3))
        offsets = op.Reshape(op.Mul(op.Range(op.Constant(value_int=0), op.Squeeze(n, ints(0)), op.Constant(value_int=1)),
                                    op.Squeeze(ns, ints(0))), ints(-1, 1, 1))
        rel_sorted = op.Gather(op.Reshape(rel, ints(-1)), op.Add(order, offsets), axis=0)  # N Nq kmax
        pos = op.Cast(op.Range(op.Constant(value_int=0), op.Squeeze(kmax, ints(0)), op.Constant(value_int=1)), to=1)
        disc = op.Div(f(math.log(2.0)), op.Log(op.Add(pos, f(2.0))))  # 1 / log2(p + 1), p = pos + 1
        within_k = op.Cast(op.Less(op.Unsqueeze(pos, ints(0)), op.Unsqueeze(k, ints(1))), to=1)  # N kmax
        w = op.Mul(disc, within_k)
        dcg = op.ReduceSum(op.Mul(rel_sorted, op.Unsqueeze(w, ints(1))), ints(-1), keepdims=0)  # N Nq
        idcg = op.ReduceSum(w, ints(-1), keepdims=1)  # N 1 (sum of the first k discounts)
        return op.Where(op.Greater(idcg, f(0.0)), op.Div(dcg, op.Max(idcg, f(1e-12))), op.Mul(dcg, f(0.0)))

    def ndcg_from_features(query, support, relevance):
        query = op.Cast(query, to=1)
        support = op.Cast(support, to=1)
        gram = op.MatMul(query, op.Transpose(support, perm=[0, 2, 1]))  # N Nq Ns
        sq = op.Transpose(op.ReduceSum(op.Mul(support, support), ints(-1), keepdims=1), perm=[0, 2, 1])  # N 1 Ns
        return ndcg_from_distances(op.Sub(sq, op.Mul(gram, f(2.0))), relevance)

    return ndcg_from_distances, ndcg_from_features


def _plugin():
    from onnxscript.values import Opset

    register_plugin_schema()
    icpd_ops = Opset(PLUGIN_DOMAIN, 1)

    def ndcg_prior_plugin(query, support, relevance):
        return getattr(icpd_ops, OP_TYPE)(
            query, support, relevance, plugin_namespace=PLUGIN_NAMESPACE, plugin_version=PLUGIN_VERSION
        )

    return ndcg_prior_plugin


def translation_table(form: str) -> dict[object, Callable]:
    """custom_translation_table for torch.onnx.export."""
    import torch

    import icpd.kernels.ops  # noqa: F401  (registers icpd::ndcg_prior)

    if form not in RANK_PRIOR_FORMS:
        raise ValueError(f"--rank-prior: {form!r}; choose one of {', '.join(RANK_PRIOR_FORMS)}")
    from_distances, from_features = _standard()
    return {
        torch.ops.icpd.ndcg_prior_dist.default: from_distances,
        torch.ops.icpd.ndcg_prior.default: from_features if form == "onnx" else _plugin(),
    }
