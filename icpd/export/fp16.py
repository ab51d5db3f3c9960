"""FP16 model directories: the exported ONNX graphs rewritten in mixed precision for TensorRT.

``icpd build`` makes every network strongly typed (TensorRT 11 knows no other kind; 10.x has the
flag since 10.0), so an FP16 engine comes from an ONNX graph that is itself FP16 (FP16
initialisers, Casts at the precision boundaries), on 10.x and 11.x alike. This module writes such
a model dir from an FP32 one:

- ``encoder.onnx`` and ``matcher.onnx`` become mixed precision; ``preprocess.onnx`` (uint8 in,
  a resize and a normalisation) is copied unchanged.
- FP32 is kept for the numerically sensitive parts (:data:`FP32_OPS`): LayerNorm and softmax
  (the known FP16 failure of ViT encoders), reductions and norms (sums over thousands of
  values), InstanceNorm/GroupNorm, the rank prior (``NdcgPrior`` node, or the Scan of TopKs the
  standard form decomposes into, with the distance chain back to the Gram MatMul: distance ties
  must break the same way as in FP32) and the last compute layer in front of every graph output
  (the final logits). No FP32 value crosses into another FP32 node rounded to FP16
  (:func:`drop_fp16_round_trips`).
- Graph inputs and outputs stay FP32 (Casts at the boundary), so support caches, feeds and
  every consumer of the outputs are the same as for the FP32 model dir.

The model.json of the new dir says ``"precision": "fp16"`` and records what was kept in FP32
and, when checked, the error statistics of ONNX Runtime on the FP16 graphs against the FP32 ones.
Needs onnxconverter-common (``pip install onnxconverter-common``).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from icpd.export.model_dir import ModelDir, check_replaceable, describe_files, write_model_json
from icpd.io.atomic import atomic_dir

# Op types computed in FP32 inside an FP16 graph (the converter's own block list is added).
FP32_OPS = (
    "LayerNormalization",
    "Softmax",
    "LogSoftmax",
    "ReduceMean",
    "ReduceSum",
    "ReduceSumSquare",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "LpNormalization",
    "InstanceNormalization",
    "GroupNormalization",
    "BatchNormalization",
    "TopK",
    "NdcgPrior",
)
# The exporter tags every node it emits for icpd::ndcg_prior with this in its class hierarchy.
RANK_PRIOR_TAG = "icpd.ndcg_prior"
# Ops that only move or reshape data: walking back from an output passes through them.
_DATA_MOVEMENT = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Cast", "Concat", "Slice",
                  "Resize", "Flatten", "Expand", "Gather", "Split"}
CONVERTED = ("encoder", "matcher")
HEAD_OUTPUTS = ("logits",)  # graph outputs whose last compute layer stays FP32
# Defaults of onnxconverter-common: values beyond FP16's range are clamped when initialisers are cast.
MIN_POSITIVE = 1e-7
MAX_FINITE = 1e4


class Fp16ConversionError(RuntimeError):
    """The FP16 conversion failed, or its result did not pass the ONNX checker."""


def _converter() -> Any:
    try:
        from onnxconverter_common import float16
    except ImportError as err:
        raise Fp16ConversionError(
            f"FP16 conversion needs onnxconverter-common ({err}); pip install onnxconverter-common"
        ) from err
    return float16


def rank_prior_nodes(graph: Any) -> set[str]:
    """Names of the nodes that compute the rank prior: tagged by the exporter, or NdcgPrior nodes,
    plus what computes their distance input back to (and including) the Gram MatMul: the order of
    near-equal distances must not be decided in FP16."""
    names = set()
    tagged_nodes = []
    for node in graph.node:
        tagged = any(p.key == "pkg.torch.onnx.class_hierarchy" and RANK_PRIOR_TAG in p.value for p in node.metadata_props)
        if tagged or node.op_type == "NdcgPrior":
            names.add(node.name)
            tagged_nodes.append(node)
    producer = {o: n for n in graph.node for o in n.output}
    stack = [i for n in tagged_nodes for i in n.input[:1] if i]  # the distance (or query) input
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in names:
            continue
        names.add(node.name)
        if node.op_type not in ("MatMul", "Gemm"):  # stop at the GEMM that makes the Gram matrix
            stack.extend(i for i in node.input if i)
    return names


def output_head_nodes(graph: Any, outputs: tuple[str, ...] = HEAD_OUTPUTS) -> set[str]:
    """Nodes from each of ``outputs`` back to (and including) its last compute node (the final conv)."""
    producer = {o: n for n in graph.node for o in n.output}
    found: set[str] = set()
    stack = [o.name for o in graph.output if o.name in outputs]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in found:
            continue
        found.add(node.name)
        if node.op_type in _DATA_MOVEMENT:
            stack.extend(i for i in node.input[:1] if i)
    return found


def fp32_nodes(graph: Any) -> set[str]:
    """Node names kept in FP32 beyond :data:`FP32_OPS`: the rank prior and the output heads."""
    return rank_prior_nodes(graph) | output_head_nodes(graph)


def convert_graph_fp16(model: Any) -> Any:
    """One ModelProto (weights loaded) -> mixed-precision ModelProto with FP32 inputs and outputs."""
    float16 = _converter()
    block_ops = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(FP32_OPS))
    nodes = sorted(fp32_nodes(model.graph))
    bodies = _fp32_subgraphs(model.graph, set(nodes))
    _detach_outputs(model)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # one warning per constant clamped to FP16's range: expected, noise
            converted = float16.convert_float_to_float16(
                model, min_positive_val=MIN_POSITIVE, max_finite_val=MAX_FINITE, keep_io_types=True,
                disable_shape_infer=False, op_block_list=block_ops, node_block_list=nodes,
            )
    except Exception as err:
        raise Fp16ConversionError(f"FP16 conversion of graph {model.graph.name!r} failed: {err}") from err
    _restore_subgraphs(converted.graph, *bodies)
    _float32_outputs(converted)
    drop_fp16_round_trips(converted.graph)
    return converted


def drop_fp16_round_trips(graph: Any) -> int:
    """Make every ``Cast(to=FLOAT)`` of a ``Cast(to=FLOAT16)`` of an FP32 value read that value directly.

    onnxconverter-common puts a Cast to FP16 after every FP32-kept node and a Cast to FP32 before
    the next one, and removes the pair only when the value has no other consumer. Where it stays,
    an FP32 value crosses into the next FP32 node rounded to FP16: the distance matrix in front
    of the sort form's TopK (shared with the cosine prior, which is FP16) and the output heads
    were rounded that way, so near-tied distances were ordered in FP16. Returns the number of
    Casts rewired; Cast nodes left without a consumer are removed.
    """
    from onnx import TensorProto

    types = {vi.name: vi.type.tensor_type.elem_type for vi in [*graph.value_info, *graph.input, *graph.output]}
    types.update({t.name: t.data_type for t in graph.initializer})
    producer = {o: n for n in graph.node for o in n.output}

    def cast_to(node: Any) -> int | None:
        if node is None or node.op_type != "Cast":
            return None
        return next((a.i for a in node.attribute if a.name == "to"), None)

    rewired = 0
    for node in graph.node:
        if cast_to(node) != TensorProto.FLOAT:
            continue
        upstream = producer.get(node.input[0])
        while upstream is not None and upstream.op_type == "Identity":
            upstream = producer.get(upstream.input[0])
        if cast_to(upstream) == TensorProto.FLOAT16 and types.get(upstream.input[0]) == TensorProto.FLOAT:
            node.input[0] = upstream.input[0]  # a Cast FP32 -> FP32 is an identity
            rewired += 1
    _remove_dead_casts(graph)
    return rewired


def _remove_dead_casts(graph: Any) -> None:
    """Drop Cast and Identity nodes whose outputs nothing reads (repeated: chains of them)."""
    while True:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        used |= _subgraph_reads(graph)
        dead = [n for n in graph.node if n.op_type in ("Cast", "Identity") and not any(o in used for o in n.output)]
        if not dead:
            return
        for n in dead:
            graph.node.remove(n)


def _subgraph_reads(graph: Any) -> set[str]:
    from onnx import AttributeProto

    reads: set[str] = set()
    for node in graph.node:
        for a in node.attribute:
            if a.type == AttributeProto.GRAPH:
                reads |= _subgraph_outer_refs(a.g)
    return reads


def _subgraph_outer_refs(graph: Any) -> set[str]:
    """Names a subgraph reads from the enclosing graph (used, not defined inside it)."""
    from onnx import AttributeProto

    defined = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    used: set[str] = set()
    for node in graph.node:
        used.update(i for i in node.input if i)
        defined.update(node.output)
        for a in node.attribute:
            if a.type == AttributeProto.GRAPH:
                used |= _subgraph_outer_refs(a.g)
    return used - defined


def _fp32_subgraphs(graph: Any, blocked: set[str]) -> tuple[dict[str, list[Any]], list[Any]]:
    """Copies of the graph attributes of the blocked nodes (the rank prior's Scan body), and FP32
    copies of the main-graph initialisers they read.

    The converter rewrites subgraphs even of blocked nodes, and the exporter lifts a subgraph's
    constants into the main graph's initialisers, where they would be converted to FP16 too. The
    copies are read under a new name, so other users of the same initialiser are unaffected.
    """
    from onnx import AttributeProto

    inits = {i.name: i for i in graph.initializer}
    bodies: dict[str, list[Any]] = {}
    fp32_inits: dict[str, Any] = {}
    for node in graph.node:
        if node.name not in blocked:
            continue
        attrs = [copy.deepcopy(a) for a in node.attribute if a.type == AttributeProto.GRAPH]
        for a in attrs:
            refs = {r: f"{r}__fp32" for r in _subgraph_outer_refs(a.g) if r in inits}
            _rename_inputs(a.g, refs)
            for old, new in refs.items():
                if new not in fp32_inits:
                    fp32_inits[new] = copy.deepcopy(inits[old])
                    fp32_inits[new].name = new
        if attrs:
            bodies[node.name] = attrs
    return bodies, list(fp32_inits.values())


def _rename_inputs(graph: Any, names: dict[str, str]) -> None:
    from onnx import AttributeProto

    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in names:
                node.input[i] = names[name]
        for a in node.attribute:
            if a.type == AttributeProto.GRAPH:
                _rename_inputs(a.g, names)


def _restore_subgraphs(graph: Any, bodies: dict[str, list[Any]], fp32_inits: list[Any]) -> None:
    from onnx import AttributeProto

    for node in graph.node:
        if node.name in bodies:
            kept = [a for a in node.attribute if a.type != AttributeProto.GRAPH]
            del node.attribute[:]
            node.attribute.extend(kept + bodies[node.name])
    graph.initializer.extend(fp32_inits)


def _detach_outputs(model: Any) -> None:
    """Give every graph output its own Identity node, so no output is also an internal value.

    The encoder's ``feat_layerXX`` are read by the next layer too; onnxconverter-common then
    types that internal use as FP32 while its producer emits FP16 (ORT refuses the graph).
    """
    from onnx import helper

    for out in model.graph.output:
        inner = f"{out.name}__value"
        for node in model.graph.node:
            node.output[:] = [inner if o == out.name else o for o in node.output]
            node.input[:] = [inner if i == out.name else i for i in node.input]
        model.graph.node.append(helper.make_node("Identity", [inner], [out.name], name=f"{out.name}__output"))


def _float32_outputs(model: Any) -> None:
    """Make every float graph output FP32 through its boundary Cast.

    onnxconverter-common 1.16 with ``keep_io_types`` and ``disable_shape_infer`` leaves the
    boundary Casts of the outputs at ``to=FLOAT16``; the graph must return FP32 as before.
    """
    from onnx import TensorProto, helper

    producer = {o: n for n in model.graph.node for o in n.output}
    for out in model.graph.output:
        if out.type.tensor_type.elem_type not in (TensorProto.FLOAT, TensorProto.FLOAT16):
            continue
        node = producer.get(out.name)
        if node is None or node.op_type != "Cast":
            raise Fp16ConversionError(f"graph output {out.name!r} has no boundary Cast after FP16 conversion")
        del node.attribute[:]
        node.attribute.append(helper.make_attribute("to", TensorProto.FLOAT))
        out.type.tensor_type.elem_type = TensorProto.FLOAT


def precision_summary(model: Any) -> dict[str, Any]:
    """Which node types compute in FP16 and which in FP32 (by the element type of their first float input)."""
    from onnx import TensorProto

    types = {vi.name: vi.type.tensor_type.elem_type for vi in [*model.graph.value_info, *model.graph.input, *model.graph.output]}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    fp16: Counter[str] = Counter()
    fp32: Counter[str] = Counter()
    for node in model.graph.node:
        if node.op_type == "Cast":
            continue
        kinds = [types.get(i) for i in node.input if i]
        if TensorProto.FLOAT16 in kinds:
            fp16[node.op_type] += 1
        elif TensorProto.FLOAT in kinds:
            fp32[node.op_type] += 1
    return {"fp16": dict(sorted(fp16.items())), "fp32": dict(sorted(fp32.items()))}


def _save(model: Any, path: Path, size_threshold: int = 1024) -> None:
    """Save with the weights in ``<name>.data`` beside it, then run the ONNX checker on the file."""
    import sys

    import onnx
    from onnx.external_data_helper import set_external_data

    # Marked by hand: onnx's save_as_external_data refuses a location that exists relative to the
    # *current* directory, not to the model's.
    for tensor in model.graph.initializer:
        if tensor.HasField("raw_data") and sys.getsizeof(tensor.raw_data) >= size_threshold:
            set_external_data(tensor, f"{path.name}.data")
    onnx.save_model(model, str(path))
    onnx.checker.check_model(str(path))


def convert_model_dir_fp16(
    src_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    check: Callable[[Path, Path], dict[str, Any]] | None = None,
    force: bool = False,
) -> ModelDir:
    """Write an FP16 copy of the FP32 model dir ``src_dir`` to ``out_dir`` (see the module docstring).

    Args:
        check: ``check(fp32_dir, fp16_dir) -> report``, run on the converted folder before it is
            moved into place; the report is recorded under ``model.json["fp16"]["check"]``
            (``icpd.trt.validate.check_fp16_against_fp32`` runs both in ONNX Runtime on the
            harness's seeded episodes and judges them by the FP16 pass rule of
            :mod:`icpd.export.validate`; it lives above the runtime, which this layer cannot
            import). Its verdict is recorded, not enforced: with random weights (latency-only
            models) the logits are near zero and the argmax masks flip on FP16 round-off alone
            (the tiny preset: pixel agreement 0.9998, mean foreground IoU 0.988 < 0.99).
        force: replace a non-empty ``out_dir``.

    Raises:
        Fp16ConversionError: the source is not FP32, the conversion or the ONNX checker failed.
        ModelDirError: ``src_dir`` is not a model dir.
    """
    import onnx

    src = ModelDir.open(src_dir)
    out = Path(out_dir)
    if src.meta.get("precision", "fp32") != "fp32":
        raise Fp16ConversionError(f"--model {src.path}: precision is {src.meta.get('precision')!r}; convert an FP32 model dir")
    if out.exists() and any(out.iterdir()) and not force:
        raise Fp16ConversionError(f"--out {out}: exists and is not empty; pass force=True (--force) or choose another folder")
    check_replaceable(out)  # --force replaces a model dir or an empty folder, nothing else
    try:
        with atomic_dir(out, replace=force) as work:
            meta = json.loads(json.dumps(src.meta))
            kept: dict[str, Any] = {}
            for role in [r for r in ("preprocess", *CONVERTED, "weights") if r in src.meta["files"]]:  # runtime-only: no weights
                name = src.meta["files"][role]["name"]
                if role in CONVERTED:
                    model = onnx.load(str(src.file(role)), load_external_data=True)
                    blocked = sorted(fp32_nodes(model.graph))
                    converted = convert_graph_fp16(model)
                    _save(converted, work / name)
                    kept[role] = {"fp32_nodes": len(blocked), **precision_summary(converted)}
                else:
                    for f in src.role_files(role):
                        shutil.copy2(f, work / f.name)
            meta["precision"] = "fp16"
            meta["fp16"] = {"source_dir": str(src.path), "fp32_ops": list(FP32_OPS),
                            "fp32_subgraphs": ["rank prior (NdcgPrior / Scan of TopK)", "output heads (final logits)"],
                            "io": "float32", "graphs": kept}
            meta.pop("validation", None)
            meta["files"] = describe_files(work, {role: src.meta["files"][role]["name"] for role in src.meta["files"]})
            write_model_json(work, meta)
            if check is not None:
                meta["fp16"]["check"] = check(src.path, work)
                write_model_json(work, meta)
    except onnx.checker.ValidationError as err:
        raise Fp16ConversionError(f"the FP16 graphs fail the ONNX checker: {err}") from err
    return ModelDir.open(out)
