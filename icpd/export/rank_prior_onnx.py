"""ONNX forms of the rank (NDCG) prior, chosen at export time (:class:`icpd.config.RankPriorForm`).

- ``topk``: plain opset-18 ops on the distance matrix the cosine prior's GEMM already gives: a
  ``Scan`` over the (item, shot) pairs whose body sorts that pair's k nearest support pixels
  (TopK(largest=0, sorted=1), k = its own number of relevant pixels), gathers their relevance and
  sums the discounts. One TopK per pair with its own k, not one with the largest k of all shots:
  5 shots with masks of 15, 4, 3, 7 and 5% of the image take 61 instead of 95 ms at 32x32 in ONNX
  Runtime on a 2-core CPU. TopK's K and Range's limit come from tensor *values* (ReduceSum of the
  relevance), so TensorRT cannot build this form (it needs shape tensors there).
- ``sort``: plain opset-18 ops with static shapes only, for TensorRT without a plugin: every
  distance row fully sorted by one batched TopK whose K is the row length taken from ``Shape``
  (``sorted=1``), the relevance gathered in that order, the discounts of positions p < k summed
  (k is data, used only as a value in the mask p < k, never as a shape). TensorRT's TopK takes
  K < 3840: the paper preset's levels have at most 32 x 32 = 1024 support pixels per shot; a
  larger support map is reported by ``icpd check-trt`` (use the ``plugin`` form, Ns <= 4096).
- ``plugin``: one custom node ``NdcgPrior`` (domain ``icpd``) with attributes
  ``plugin_namespace="icpd"`` and ``plugin_version="1"``, which the TensorRT ONNX parser maps
  to the icpd plugin (see ``icpd.kernels.trt_plugin``).

Tie rule (every form): ONNX TopK orders equal values by lower index first, i.e. ascending support
index, as the eager code and the CUDA kernel do.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from icpd.config import RankPriorForm
from icpd.kernels.trt_plugin import OP_TYPE, PLUGIN_NAMESPACE, PLUGIN_VERSION

PLUGIN_DOMAIN = "icpd"


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
            defs.OpSchema.Attribute("plugin_namespace", defs.OpSchema.AttrType.STRING,
                                    "TensorRT plugin namespace"),
            defs.OpSchema.Attribute("plugin_version", defs.OpSchema.AttrType.STRING,
                                    "TensorRT plugin version"),
        ],
    )
    defs.register_schema(schema)


def _ndcg_item_graph():
    """Scan body: d (Nq, Ns) distances, r (Ns) relevance of one (item, shot) -> (Nq,) NDCG@k."""
    from onnx import TensorProto, helper

    f32, i64 = TensorProto.FLOAT, TensorProto.INT64

    def const(name: str, dtype: int, values: list, scalar: bool = False):
        return helper.make_tensor(name, dtype, [] if scalar else [len(values)], values)

    node = helper.make_node
    nodes = [
        node("Greater", ["r", "zero"], ["relevant"]),
        node("Cast", ["relevant"], ["rel"], to=f32),
        node("ReduceSum", ["rel", "axis0"], ["k_f"], keepdims=1),  # (1,) k = number of relevant pixels
        node("Cast", ["k_f"], ["k"], to=i64),
        node("Max", ["k", "one"], ["k1"]),  # TopK needs K >= 1; k = 0 is answered 0 below
        # Nq k; ties: lower index first
        node("TopK", ["d", "k1"], ["nearest", "order"], axis=-1, largest=0, sorted=1),
        node("Gather", ["rel", "order"], ["rel_sorted"], axis=0),  # Nq k
        node("Squeeze", ["k1"], ["k1_scalar"]),
        node("Range", ["zero_i", "k1_scalar", "one_i"], ["positions"]),
        node("Cast", ["positions"], ["p"], to=f32),
        node("Add", ["p", "two"], ["p2"]),
        node("Log", ["p2"], ["log_p2"]),
        node("Div", ["ln2", "log_p2"], ["discount"]),  # 1 / log2(rank + 1), rank = p + 1
        node("MatMul", ["rel_sorted", "discount"], ["dcg"]),  # Nq
        node("ReduceSum", ["discount", "axis0"], ["idcg"], keepdims=1),  # the ideal DCG: k relevant first
        node("Div", ["dcg", "idcg"], ["ndcg"]),
        node("Greater", ["k_f", "zero"], ["any_relevant"]),
        node("Where", ["any_relevant", "ndcg", "zero"], ["prior"]),
    ]
    # Constant nodes, not initialisers: the exporter lifts a body's initialisers into the main graph,
    # where the FP16 conversion would retype them.
    consts = [
        const("zero", f32, [0.0], scalar=True), const("two", f32, [2.0], scalar=True),
        const("ln2", f32, [math.log(2.0)], scalar=True), const("axis0", i64, [0]), const("one", i64, [1]),
        const("zero_i", i64, [0], scalar=True), const("one_i", i64, [1], scalar=True),
    ]
    return helper.make_graph(
        [node("Constant", [], [c.name], value=c) for c in consts] + nodes, "ndcg_prior_item",
        [helper.make_tensor_value_info("d", f32, ["nq", "ns"]),
         helper.make_tensor_value_info("r", f32, ["ns"])],
        [helper.make_tensor_value_info("prior", f32, ["nq"])],
    )


def _standard(form: RankPriorForm):
    """(from-distances translation, from-features translation) in opset-18 ops for ``topk`` or ``sort``."""
    from onnxscript import opset18 as op

    def ints(*v: int):
        return op.Constant(value_ints=list(v))

    def f(x: float):
        return op.Constant(value_float=x)

    def ndcg_topk(dist, relevance):
        # dist (N, Nq, Ns), relevance (N, Ns) -> (N, Nq): one Scan step per item, each with its own k
        return op.Scan(op.Cast(dist, to=1), op.Cast(relevance, to=1), body=_ndcg_item_graph(),
                       num_scan_inputs=2)

    def ndcg_sort(dist, relevance):
        # dist (N, Nq, Ns), relevance (N, Ns) -> (N, Nq); every shape-like input comes from Shape or a
        # constant
        dist = op.Cast(dist, to=1)
        rel = op.Cast(op.Greater(op.Cast(relevance, to=1), f(0.0)), to=1)  # N Ns, 1 where relevant
        ns = op.Shape(dist, start=2, end=3)  # (1,) the row length: a shape tensor
        # N Nq Ns, full sort; ties: lower index first
        _, order = op.TopK(dist, ns, axis=-1, largest=0, sorted=1)
        # GatherElements does not broadcast: the relevance is expanded to the distances' shape first
        rel_sorted = op.GatherElements(op.Expand(op.Unsqueeze(rel, ints(1)), op.Shape(dist)), order, axis=-1)
        k = op.ReduceSum(rel, ints(-1), keepdims=1)  # N 1: k as a value, never as a shape
        positions = op.Range(op.Constant(value_int=0), op.Squeeze(ns, ints(0)), op.Constant(value_int=1))
        p = op.Cast(positions, to=1)
        discount = op.Div(f(math.log(2.0)), op.Log(op.Add(p, f(2.0))))  # Ns: 1 / log2(rank + 1), rank = p + 1
        w = op.Where(op.Less(p, k), discount, f(0.0))  # N Ns: the discounts of positions p < k
        dcg = op.Squeeze(op.MatMul(rel_sorted, op.Unsqueeze(w, ints(-1))), ints(-1))  # N Nq
        idcg = op.ReduceSum(w, ints(-1), keepdims=1)  # N 1: the ideal DCG, k relevant pixels first
        return op.Where(op.Greater(k, f(0.0)), op.Div(dcg, op.Max(idcg, f(1e-30))), f(0.0))  # 0 where k = 0

    ndcg_from_distances = ndcg_sort if form == RankPriorForm.SORT else ndcg_topk

    def ndcg_from_features(query, support, relevance):
        query = op.Cast(query, to=1)
        support = op.Cast(support, to=1)
        gram = op.MatMul(query, op.Transpose(support, perm=[0, 2, 1]))  # N Nq Ns
        # N 1 Ns
        sq = op.Transpose(op.ReduceSum(op.Mul(support, support), ints(-1), keepdims=1), perm=[0, 2, 1])
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


def translation_table(form: RankPriorForm) -> dict[object, Callable]:
    """custom_translation_table for torch.onnx.export: the rank-prior ops written in ``form``
    (text from outside is parsed first, by :meth:`RankPriorForm.parse`)."""
    import torch

    import icpd.model.rank_prior  # noqa: F401  (registers icpd::ndcg_prior)

    form = RankPriorForm.parse(form, "form")  # a member passes through; a stray string is refused here
    standard = RankPriorForm.SORT if form == RankPriorForm.SORT else RankPriorForm.TOPK
    from_distances, from_features = _standard(standard)
    return {
        torch.ops.icpd.ndcg_prior_dist.default: from_distances,
        torch.ops.icpd.ndcg_prior.default: _plugin() if form == RankPriorForm.PLUGIN else from_features,
    }
