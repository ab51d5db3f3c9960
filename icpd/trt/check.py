"""``icpd check-trt``: a static check of exported ONNX graphs against TensorRT's ONNX parser.

What a graph must satisfy to be parsed and built by TensorRT, checked without TensorRT:

- every node's op type is in TensorRT's ONNX operator matrix (:mod:`icpd.trt.operators`) with
  the per-op restrictions that apply (TopK ``sorted=1`` and K < 3840; Resize modes; reduction
  ``axes`` / CumSum ``axis`` / Squeeze-Unsqueeze ``axes`` / Slice ``axes`` as initializers;
  Loop scan outputs of static length; MaxPool without ``Indices``; ...), its data type is one
  TensorRT takes for that op, and the model's opset is in that TensorRT version's range;
- shape-tensor provenance: every shape-like input (TopK's K, Reshape/Expand shapes, Range bounds,
  Slice starts/ends/steps, Tile repeats, Resize scales/sizes, Pad pads, ConstantOfShape, Loop's
  trip count) is traced back through the graph, Scan/Loop/If bodies included, to ``Shape``/``Size``
  outputs and initializers only; a data-dependent one is reported with the chain of nodes that
  makes it so;
- custom-domain nodes are icpd's ``NdcgPrior`` plugin node (with its attributes) and nothing else.

A graph that passes is buildable as far as a static check can tell: TensorRT may still refuse a
layer for a reason the matrix does not state (tactics, memory), which only a build on the target
shows. :func:`check_model_dir` checks every graph of a model dir; ``icpd build`` calls it first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icpd.errors import ParamError, arg
from icpd.kernels.launch import MAX_SUPPORT
from icpd.kernels.trt_plugin import ONNX_ATTRIBUTES, OP_TYPE
from icpd.trt import graph_values as gv
from icpd.trt.operators import ONNX_TYPE_NAMES, operator_matrix

TOPK_MAX_K = 3840  # TensorRT: "K input must be less than 3840"
PLUGIN_DOMAIN = "icpd"  # the exporter's domain of the NdcgPrior node
FIX_RANK_PRIOR = "export with `icpd export --rank-prior sort` (standard ops) or `--rank-prior plugin`"

# op -> shape-like inputs: (input index, name, "shape" = a shape tensor | "initializer" = a constant)
SHAPE_INPUTS: dict[str, tuple[tuple[int, str, str], ...]] = {
    "TopK": ((1, "K", "shape"),),
    "Reshape": ((1, "shape", "shape"),),
    "Expand": ((1, "shape", "shape"),),
    "Range": ((0, "start", "shape"), (1, "limit", "shape"), (2, "delta", "shape")),
    "Slice": ((1, "starts", "shape"), (2, "ends", "shape"), (3, "axes", "initializer"), (4, "steps", "shape")),
    "ConstantOfShape": ((0, "shape", "shape"),),
    "Tile": ((1, "repeats", "shape"),),
    "Resize": ((2, "scales", "shape"), (3, "sizes", "shape")),
    "Upsample": ((1, "scales", "shape"),),
    "Pad": ((1, "pads", "shape"), (3, "axes", "initializer")),
    "Split": ((1, "split", "shape"),),
    "OneHot": ((1, "depth", "initializer"),),
    "Squeeze": ((1, "axes", "initializer"),),
    "Unsqueeze": ((1, "axes", "initializer"),),
    "CumSum": ((1, "axis", "initializer"),),
    "Loop": ((0, "M (trip count)", "shape"),),
    **{op: ((1, "axes", "initializer"),) for op in (
        "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
        "ReduceProd", "ReduceSum", "ReduceSumSquare")},
}
RESIZE_COORDINATES = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
RESIZE_MODES = {"nearest", "linear"}
RESIZE_NEAREST = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}
# Where the data type to check sits: the first input, except where that is a condition or index.
_TYPED_INPUT = {"Where": 1, "Shape": None, "Size": None, "Constant": None, "Loop": None, "Scan": None, "If": None}


@dataclass(frozen=True)
class Violation:
    """One reason TensorRT would refuse a graph."""

    graph: str  # file name, e.g. matcher.onnx
    node: str  # node name; inside a body: "Parent/Child"
    op: str
    rule: str
    fix: str


@dataclass
class CheckReport:
    """Violations of every checked graph for one TensorRT version."""

    trt_version: str
    graphs: list[str] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.violations

    def format_table(self) -> str:
        """Violations as an aligned text table (graph, node, op, rule, fix), or the pass line."""
        if self.passed:
            return f"TensorRT {self.trt_version}: {', '.join(self.graphs)} pass the static check (no violations)"
        rows = [("graph", "node", "op", "rule", "fix")] + [(v.graph, v.node, v.op, v.rule, v.fix)
                                                         for v in self.violations]
        widths = [min(max(len(r[i]) for r in rows), 72) for i in range(4)]  # long rules push the fix column out
        lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths) + "  ---")
        head = f"TensorRT {self.trt_version}: {len(self.violations)} violation(s) in {', '.join(self.graphs)}"
        return "\n".join([head, *lines])


class TrtCompatibilityError(RuntimeError):
    """A graph TensorRT cannot build (``icpd build`` stops with the table instead of a parser error)."""

    def __init__(self, report: CheckReport) -> None:
        super().__init__(report.format_table())
        self.report = report


def normalize_trt_version(version: str) -> str:
    """``"10.3"``, ``"10.x"`` -> ``"10.3"`` (the 10.x matrix); ``"11"``, ``"11.1"`` -> ``"11"``;
    ValueError otherwise."""
    match = re.fullmatch(r"(\d+)(?:\.(\d+))?(?:\.\d+)*", str(version).strip())
    known = ", ".join(operator_matrix()["tensorrt_versions"])
    if not match or (int(match.group(1)), int(match.group(2) or 0)) < (10, 0) or int(match.group(1)) > 11:
        raise ParamError(f"{arg('trt_version', repr(version))}: choose one of {known} "
                         "(TensorRT 10.x or 11.x)")
    return "11" if int(match.group(1)) == 11 else "10.3"


# -- one graph ---------------------------------------------------------------------------------


def check_graph(model: Any, trt_version: str = "10.3", graph_name: str = "graph") -> list[Violation]:
    """Violations of one ONNX ModelProto (external data need not be loaded) for ``trt_version``."""
    version = normalize_trt_version(trt_version)
    matrix = operator_matrix()
    lo, hi = matrix["tensorrt_versions"][version]["opset"]
    out: list[Violation] = []
    opset = {o.domain: o.version for o in model.opset_import}.get("")
    if opset is not None and not lo <= opset <= hi:
        out.append(Violation(graph_name, "(model)", "-", f"opset {opset} outside TensorRT {version}'s range {lo}..{hi}",
                             f"export with an opset in {lo}..{hi} (icpd exports opset 18)"))
    shapes = gv.infer_shapes(model)
    types: dict[str, int] = shapes.pop("__types__")  # type: ignore[assignment]
    memo: dict[tuple[int, str], list[str] | None] = {}
    _check_nodes(model.graph, gv.Scope(model.graph, "", None, shapes), graph_name, matrix, types, memo, out)
    return out


def _check_nodes(graph: Any, scope: gv.Scope, graph_name: str, matrix: dict, types: dict, memo: dict,
                 out: list) -> None:
    from onnx import AttributeProto

    for node in graph.node:
        name = scope.node_name[id(node)]

        def bad(rule: str, fix: str, node=node, name=name) -> None:
            out.append(Violation(graph_name, name, node.op_type, rule, fix))

        if node.domain not in ("", "ai.onnx"):
            _check_custom(node, scope, bad)
            continue
        entry = matrix["operators"].get(node.op_type)
        if entry is None or not entry["supported"]:
            bad("not supported by TensorRT's ONNX parser" if entry else "not in TensorRT's ONNX operator matrix",
                "rewrite the graph without this op (or implement it as a TensorRT plugin)")
            continue
        _check_type(node, scope, entry, types, bad)
        for index, what, need in SHAPE_INPUTS.get(node.op_type, ()):
            if index >= len(node.input) or not node.input[index]:
                continue
            if need == "initializer":
                if not gv.is_constant(node.input[index], scope):
                    bad(f"`{what}` must be an initializer", "make it a constant in the exported graph")
                continue
            chain = gv.data_chain(node.input[index], scope, memo)
            if chain is not None:
                fix = (FIX_RANK_PRIOR if node.op_type in ("TopK", "Range")
                       else "compute it from Shape outputs and constants only")
                bad(f"`{what}` must be a shape tensor, but depends on tensor values: " + " <- ".join(chain), fix)
        _check_attributes(node, scope, bad)
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                body = gv.Scope(attr.g, f"{name}.{attr.name}", scope, scope.shapes)
                _check_nodes(attr.g, body, graph_name, matrix, types, memo, out)


def _check_custom(node: Any, scope: gv.Scope, bad: Any) -> None:
    if node.domain != PLUGIN_DOMAIN or node.op_type != OP_TYPE:
        bad(f"custom-domain node ({node.domain}::{node.op_type}); only icpd's {OP_TYPE} plugin node is allowed",
            "export without custom ops (icpd export writes only icpd::NdcgPrior)")
        return
    attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in gv.attrs(node).items()}
    for key, want in ONNX_ATTRIBUTES.items():
        if attrs.get(key) != want:
            bad(f"{OP_TYPE} needs attribute {key}={want!r} (the parser's plugin lookup), has {attrs.get(key)!r}",
                "re-export with `icpd export --rank-prior plugin`")
    dims = scope.shapes.get(node.input[1]) if len(node.input) > 1 else None
    if dims and len(dims) == 3 and dims[1] is not None and dims[1] > MAX_SUPPORT:
        bad(f"{dims[1]} support pixels exceed the {OP_TYPE} kernel's limit of {MAX_SUPPORT}",
            "use a smaller image size (support maps up to 64 x 64)")


def _check_type(node: Any, scope: gv.Scope, entry: dict, types: dict, bad: Any) -> None:
    allowed = set(entry["types"])
    index = _TYPED_INPUT.get(node.op_type, 0)
    if not allowed or index is None or index >= len(node.input) or not node.input[index]:
        return
    dtype = ONNX_TYPE_NAMES.get(types.get(node.input[index], 0))
    if dtype is not None and dtype not in allowed:
        bad(f"{dtype} input '{node.input[index]}' (TensorRT takes {', '.join(entry['types'])})",
            "cast to a supported type before this node")


def _check_attributes(node: Any, scope: gv.Scope, bad: Any) -> None:
    a = gv.attrs(node)
    op = node.op_type
    text = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in a.items()}
    if op == "TopK":
        if a.get("sorted", 1) != 1:
            bad("`sorted` must be 1", "export TopK with sorted=1 (torch.topk(..., sorted=True))")
        k = gv.value(node.input[1], scope) if len(node.input) > 1 else None
        if k is not None and int(k.reshape(-1)[0]) >= TOPK_MAX_K:
            bad(f"K = {int(k.reshape(-1)[0])} must be less than {TOPK_MAX_K}",
                f"support maps above {TOPK_MAX_K} pixels need `icpd export --rank-prior plugin` (up to {MAX_SUPPORT})")
    elif op == "Resize":
        checks = (("coordinate_transformation_mode", "half_pixel", RESIZE_COORDINATES),
                  ("mode", "nearest", RESIZE_MODES),
                  ("nearest_mode", "round_prefer_floor", RESIZE_NEAREST),
                  ("keep_aspect_ratio_policy", "stretch", {"stretch"}))
        for key, default, allowed in checks:
            if text.get(key, default) not in allowed:
                bad(f"{key}={text.get(key)!r} (TensorRT takes {', '.join(sorted(allowed))})",
                    "export another resize mode")
        if a.get("antialias", 0):
            bad("antialias=1 is not supported", "resize without antialiasing or as MatMuls with constant weights "
                "(icpd exports the CLIP resize that way: re-export model dirs made before)")
        dims = scope.shapes.get(node.input[0]) if node.input else None
        if "axes" in a and dims is not None and list(a["axes"]) != list(range(len(dims))):
            bad("`axes` must be an iota of the input's rank", "resize over every axis")
    elif op in ("MaxPool", "AveragePool", "LpPool"):
        if any(d != 1 for d in a.get("dilations", [])):
            bad("`dilations` must be empty or all ones", "use undilated pooling")
        if op == "MaxPool" and len(node.output) > 1 and node.output[1]:
            bad("the `Indices` output is not supported", "use MaxPool's first output only")
    elif op == "LayerNormalization" and any(o for o in node.output[1:]):
        bad("only the first output `Y` is supported", "do not export Mean/InvStdDev outputs")
    elif op == "Constant" and set(a) & {"sparse_value", "value_string", "value_strings"}:
        bad("sparse or string constants are not supported", "use a dense numeric constant")
    elif op == "ScatterND" and text.get("reduction", "none") != "none":
        bad("`reduction` is not supported", "use ScatterND without reduction")
    elif op == "Loop":
        _check_loop(node, a, scope, bad)


def _check_loop(node: Any, a: dict, scope: gv.Scope, bad: Any) -> None:
    body = a["body"]
    carried = len(node.input) - 2
    if len(node.output) <= carried:
        return  # no scan outputs: their length is not an issue
    if not node.input or not node.input[0]:
        bad("scan outputs of a Loop without a trip count have a dynamic length", "give the Loop a trip count M")
    cond_out = body.output[0].name
    cond_in = body.input[1].name if len(body.input) > 1 else ""
    producer = {o: n for n in body.node for o in n.output}
    src = producer.get(cond_out)
    while src is not None and src.op_type == "Identity":
        cond_out, src = src.input[0], producer.get(src.input[0])
    if cond_out != cond_in and not (src is not None and src.op_type == "Constant"):
        bad("scan output length cannot be dynamic: the loop condition depends on computed values",
            "loop for a fixed trip count (condition passed through unchanged)")


# -- a model dir ---------------------------------------------------------------------------------
# The graphs `icpd build` makes engines of (icpd.trt.build.ENGINE_ROLES); the TensorRT backend runs
# preprocess.onnx in PyTorch, so its findings are notes for a hand-made (trtexec) build only.
BUILT_ROLES = ("encoder", "matcher")


def model_dir_graphs(model_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Role -> ONNX file of a model dir, as model.json lists them (an FP16 variant is its own model dir)."""
    from icpd.artifacts.model_dir import ModelDir

    md = ModelDir.open(model_dir)
    return {role: md.file(role) for role, entry in md.meta.get("files", {}).items()
            if str(entry.get("name", "")).endswith(".onnx")}


def check_files(paths: Iterable[str | os.PathLike[str]], trt_version: str = "10.3") -> CheckReport:
    """:func:`check_graph` over ONNX files (external data is not read)."""
    import onnx

    version = normalize_trt_version(trt_version)
    report = CheckReport(version)
    for path in map(Path, paths):
        model = onnx.load(str(path), load_external_data=False)
        report.graphs.append(path.name)
        report.violations.extend(check_graph(model, version, path.name))
        if any(n.op_type == OP_TYPE for n in model.graph.node):
            report.notes.append(
                f"{path.name}: {OP_TYPE} plugin nodes: TensorRT 10.3 needs the C++ plugin "
                "(`icpd build --plugin-library`), >= 10.9 registers the AOT plugin from Python")
    return report


def check_model_dir(model_dir: str | os.PathLike[str], trt_version: str = "10.3") -> CheckReport:
    """The graphs ``icpd build`` builds (encoder, matcher) for ``trt_version``; the others' findings
    become notes. Raises ModelDirError / ValueError for a bad dir or version."""
    graphs = model_dir_graphs(model_dir)
    report = check_files([graphs[r] for r in BUILT_ROLES if r in graphs], trt_version)
    for role, path in graphs.items():
        if role in BUILT_ROLES:
            continue
        other = check_files([path], trt_version)
        found = "; ".join(f"{v.node} ({v.op}): {v.rule}" for v in other.violations) or "no violations"
        report.notes.append(f"{path.name}: no engine is built from it (the TensorRT backend runs it in PyTorch); "
                            f"for a trtexec build: {found}")
    return report


def installed_trt_version(default: str = "10.3") -> str:
    """The installed TensorRT's matrix key (without importing TensorRT), or ``default``."""
    from importlib import metadata

    from icpd.runtime.backends.registry import requirement

    for dist in requirement("tensorrt").distributions:  # the backend registry's list
        try:
            return normalize_trt_version(metadata.version(dist))
        except (metadata.PackageNotFoundError, ValueError):
            continue
    return default
