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

import json
import os
import shutil
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from icpd.artifacts.model_dir import ModelDir, check_replaceable, describe_files, write_model_json
from icpd.errors import arg
from icpd.export.fp16_graph import (
    Fp16ConversionError,
    detach_outputs,
    drop_fp16_round_trips,
    float32_outputs,
    fp32_subgraphs,
    restore_subgraphs,
)
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
        tagged = any(p.key == "pkg.torch.onnx.class_hierarchy" and RANK_PRIOR_TAG in p.value
                     for p in node.metadata_props)
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
    bodies = fp32_subgraphs(model.graph, set(nodes))
    detach_outputs(model)
    try:
        with warnings.catch_warnings():
            # one warning per constant clamped to FP16's range: expected, noise
            warnings.simplefilter("ignore")
            converted = float16.convert_float_to_float16(
                model, min_positive_val=MIN_POSITIVE, max_finite_val=MAX_FINITE, keep_io_types=True,
                disable_shape_infer=False, op_block_list=block_ops, node_block_list=nodes,
            )
    except Exception as err:
        raise Fp16ConversionError(f"FP16 conversion of graph {model.graph.name!r} failed: {err}") from err
    restore_subgraphs(converted.graph, *bodies)
    float32_outputs(converted)
    drop_fp16_round_trips(converted.graph)
    return converted


def precision_summary(model: Any) -> dict[str, Any]:
    """Which node types compute in FP16 and which in FP32 (by the element type of their first float input)."""
    from onnx import TensorProto

    types = {vi.name: vi.type.tensor_type.elem_type
             for vi in [*model.graph.value_info, *model.graph.input, *model.graph.output]}
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
            (``icpd.apps.validate.check_fp16_against_fp32`` runs both in ONNX Runtime on the
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
        raise Fp16ConversionError(f"{arg('src_dir', src.path)}: precision is {src.meta.get('precision')!r}; "
                                  "convert an FP32 model dir")
    if out.exists() and any(out.iterdir()) and not force:
        raise Fp16ConversionError(f"{arg('out_dir', out)}: exists and is not empty; pass "
                                  f"{arg('force', True)} or choose another folder")
    check_replaceable(out, "out_dir")  # force replaces a model dir or an empty folder, nothing else
    try:
        with atomic_dir(out, replace=force) as work:
            meta = json.loads(json.dumps(src.meta))
            kept: dict[str, Any] = {}
            # runtime-only: no weights
            for role in [r for r in ("preprocess", *CONVERTED, "weights") if r in src.meta["files"]]:
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
                            "fp32_subgraphs": ["rank prior (NdcgPrior / Scan of TopK)",
                                               "output heads (final logits)"],
                            "io": "float32", "graphs": kept}
            meta.pop("validation", None)
            meta["files"] = describe_files(work, {role: src.meta["files"][role]["name"]
                                                  for role in src.meta["files"]})
            write_model_json(work, meta)
            if check is not None:
                meta["fp16"]["check"] = check(src.path, work)
                write_model_json(work, meta)
    except onnx.checker.ValidationError as err:
        raise Fp16ConversionError(f"the FP16 graphs fail the ONNX checker: {err}") from err
    return ModelDir.open(out)
