"""What a static check of an ONNX graph needs to know about its values, without running it: which
names a graph or a Scan/Loop/If body sees (:class:`Scope`), whether a value is a *shape tensor*
(computable from ``Shape``/``Size`` outputs and initializers only; :func:`data_chain` names the
producers that make it data dependent otherwise), small constants folded to numpy (:func:`value`)
and the static shapes shape inference finds (:func:`infer_shapes`). Used by :mod:`icpd.trt.check`.
"""

from __future__ import annotations

from typing import Any

# Ops a shape tensor may pass through (TensorRT evaluates them on shape values at build time).
SHAPE_OPS = frozenset({
    "Gather", "Slice", "Concat", "Squeeze", "Unsqueeze", "Cast", "Add", "Sub", "Mul", "Div", "Mod", "Min", "Max",
    "Neg", "Abs", "Reshape", "Identity", "Flatten", "ReduceProd", "ReduceSum", "ReduceMax", "ReduceMin", "Equal",
    "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Where", "Not", "And", "Or", "Range", "ConstantOfShape",
    "Expand", "Tile", "Floor", "Ceil", "Round", "Sqrt", "Sign", "Transpose",
})
SHAPE_SOURCES = frozenset({"Shape", "Size"})


class Scope:
    """Names visible in one graph or body: producers, initializers, data inputs, static shapes."""

    def __init__(self, graph: Any, path: str, parent: Scope | None, shapes: dict[str, list]) -> None:
        self.path, self.parent, self.shapes = path, parent, shapes
        self.inits = {i.name: i for i in graph.initializer}
        self.inputs = {i.name for i in graph.input} - set(self.inits)
        self.producer = {o: n for n in graph.node for o in n.output if o}
        self.node_name = {id(n): (f"{path}/" if path else "") + (n.name or f"{n.op_type}#{i}")
                          for i, n in enumerate(graph.node)}

    def find(self, name: str) -> tuple[Scope, str] | None:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.inits:
                return scope, "initializer"
            if name in scope.producer:
                return scope, "node"
            if name in scope.inputs:
                return scope, "input"
            scope = scope.parent
        return None


def attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def data_chain(name: str, scope: Scope, memo: dict[tuple[int, str], list[str] | None]) -> list[str] | None:
    """None when ``name`` is a shape tensor (Shape/Size outputs and initializers only), else the
    chain of producers from ``name`` back to the first value that depends on tensor data."""
    found = scope.find(name)
    if found is None:
        return [f"'{name}' (undefined)"]
    where, kind = found
    key = (id(where), name)
    if key in memo:
        return memo[key]
    memo[key] = None  # cycles cannot occur in a valid graph; this guards the recursion anyway
    chain: list[str] | None = None
    if kind == "input":
        chain = [f"input '{name}' of {'the graph' if where.parent is None else 'the body ' + where.path}"]
    elif kind == "node":
        node = where.producer[name]
        label = f"{node.op_type} '{where.node_name[id(node)].rsplit('/', 1)[-1]}'"  # the scope is in the node column
        if node.op_type in SHAPE_SOURCES or node.op_type == "Constant":
            chain = None
        elif node.op_type not in SHAPE_OPS:
            chain = [label + " (tensor values)"]
        else:
            for inp in (i for i in node.input if i):
                sub = data_chain(inp, where, memo)
                if sub is not None:
                    chain = [label, *sub]
                    break
    memo[key] = chain
    return chain


def is_constant(name: str, scope: Scope) -> bool:
    found = scope.find(name)
    if found is None:
        return False
    where, kind = found
    if kind == "initializer":
        return True
    node = where.producer.get(name) if kind == "node" else None
    if node is not None and node.op_type == "Identity":
        return is_constant(node.input[0], where)
    return node is not None and node.op_type == "Constant"


def value(name: str, scope: Scope) -> Any:
    """The value of a small constant or shape expression (numpy), or None when not known statically."""
    import numpy as np
    from onnx import numpy_helper

    found = scope.find(name)
    if found is None:
        return None
    where, kind = found
    if kind == "initializer":
        t = where.inits[name]
        return None if t.data_location == 1 else numpy_helper.to_array(t)
    if kind != "node":
        return None
    node = where.producer[name]
    a = attrs(node)
    if node.op_type == "Constant":
        return numpy_helper.to_array(a["value"]) if "value" in a else None
    if node.op_type == "Shape":
        full = where.shapes.get(node.input[0])
        dims = full[a.get("start", 0): a.get("end", len(full))] if full is not None else [None]
        return None if any(d is None for d in dims) else np.array(dims, dtype=np.int64)
    args = [value(i, where) for i in node.input if i]
    if any(v is None for v in args):
        return None
    ops = {"Identity": lambda x: x, "Cast": lambda x: x,
           "Squeeze": lambda x, *_: x.reshape(-1)[0] if x.size == 1 else x,
           "Unsqueeze": lambda x, *_: x.reshape(-1), "Reshape": lambda x, *_: x, "Add": np.add, "Sub": np.subtract,
           "Mul": np.multiply, "Min": np.minimum, "Max": np.maximum,
           "Concat": lambda *xs: np.concatenate([np.atleast_1d(x) for x in xs]),
           "Gather": lambda x, i: np.take(x, i, axis=a.get("axis", 0))}
    return ops[node.op_type](*args) if node.op_type in ops else None


def infer_shapes(model: Any) -> dict[str, list]:
    """Tensor name -> dims (None where dynamic) for every tensor shape inference can type, bodies included."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # noqa: BLE001  (inference is best effort: the checks that need shapes are skipped)
        inferred = model
    shapes: dict[str, list] = {}
    types: dict[str, int] = {}

    def visit(graph: Any) -> None:
        for vi in [*graph.input, *graph.output, *graph.value_info]:
            t = vi.type.tensor_type
            types[vi.name] = t.elem_type
            if t.HasField("shape"):
                shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        for init in graph.initializer:
            types[init.name] = init.data_type
            shapes[init.name] = list(init.dims)
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    visit(attr.g)

    visit(inferred.graph)
    shapes["__types__"] = types  # type: ignore[assignment]
    return shapes
