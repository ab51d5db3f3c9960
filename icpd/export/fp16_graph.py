"""Graph surgery around onnxconverter-common's FP16 conversion (:mod:`icpd.export.fp16`): subgraph
bodies kept FP32 and restored, graph outputs detached and cast back to FP32, and FP32 -> FP16 -> FP32
round trips removed so that a consumer that needs FP32 (TopK's distances, the output heads) reads
the FP32 value itself, not an FP16-rounded copy."""

from __future__ import annotations

import copy
from typing import Any

from icpd.errors import ParamMessage

__all__ = ["Fp16ConversionError", "detach_outputs", "drop_fp16_round_trips", "float32_outputs",
           "fp32_subgraphs", "restore_subgraphs"]


class Fp16ConversionError(ParamMessage, RuntimeError):
    """The FP16 conversion failed, or its result did not pass the ONNX checker."""



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

    types = {vi.name: vi.type.tensor_type.elem_type
             for vi in [*graph.value_info, *graph.input, *graph.output]}
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
        dead = [n for n in graph.node
                if n.op_type in ("Cast", "Identity") and not any(o in used for o in n.output)]
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


def fp32_subgraphs(graph: Any, blocked: set[str]) -> tuple[dict[str, list[Any]], list[Any]]:
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


def restore_subgraphs(graph: Any, bodies: dict[str, list[Any]], fp32_inits: list[Any]) -> None:
    from onnx import AttributeProto

    for node in graph.node:
        if node.name in bodies:
            kept = [a for a in node.attribute if a.type != AttributeProto.GRAPH]
            del node.attribute[:]
            node.attribute.extend(kept + bodies[node.name])
    graph.initializer.extend(fp32_inits)


def detach_outputs(model: Any) -> None:
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


def float32_outputs(model: Any) -> None:
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
