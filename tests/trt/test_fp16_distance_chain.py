"""The FP16 model dir that `icpd build --precision fp16` builds from (on TensorRT 10.x and 11.x alike)
keeps the rank prior's distance chain in FP32: the Gram MatMul, the squared-norm Mul and the Add
that form |s|^2 - 2<q, s> read FP32 inputs, and the distances reach TopK without an FP16 round
trip (before the fix, the sort form's TopK read Cast32(Cast16(distances)): onnxconverter-common's
Cast pair between two FP32-kept nodes stays when the value has another, FP16, consumer)."""

from __future__ import annotations

from collections import Counter

import pytest


def _distance_chains(model_path):
    """For each rank-prior node (TopK of the sort form, Scan of the topk form): the nodes from its
    distance input back to (and including) the Gram MatMul, with the element types of their inputs."""
    import onnx
    from onnx import shape_inference

    graph = shape_inference.infer_shapes(onnx.load(str(model_path), load_external_data=False)).graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in [*graph.value_info, *graph.input, *graph.output]}
    types.update({t.name: t.data_type for t in graph.initializer})
    producer = {o: n for n in graph.node for o in n.output}
    chains = []
    for sink in (n for n in graph.node if n.op_type in ("TopK", "Scan")):
        chain, seen, stack = [], set(), [sink.input[0] if sink.op_type == "TopK" else sink.input[-2]]
        while stack:
            node = producer.get(stack.pop())
            if node is None or node.name in seen:
                continue
            seen.add(node.name)
            to = next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None
            chain.append((node.op_type if to is None else f"Cast:{to}", [types.get(i) for i in node.input if i]))
            if node.op_type != "MatMul":
                stack.extend(i for i in node.input if i)
        chains.append((sink, chain))
    return graph, types, chains


@pytest.mark.parametrize("form", ["sort", "topk"])
def test_distance_chain_in_front_of_the_rank_prior_stays_fp32(request, tmp_path, form):
    from onnx import TensorProto

    from icpd.export.fp16 import convert_model_dir_fp16

    src = request.getfixturevalue("tiny_sort_dir" if form == "sort" else "tiny_model_dir")
    fp16 = convert_model_dir_fp16(src, tmp_path / "fp16")
    graph, types, chains = _distance_chains(fp16.file("matcher"))
    assert len(chains) == 14  # one per prior level of the tiny preset
    assert Counter(n.op_type for n in graph.node)["MatMul"] > 14  # the rest of the matcher has MatMuls too
    for sink, chain in chains:
        ops = Counter(op for op, _ in chain)
        assert ops["MatMul"] == 1 and ops["Mul"] >= 1 and ops["Add"] + ops["Sub"] == 1, (sink.name, ops)
        # no FP16 rounding on the way: the only Casts are the features' FP16 -> FP32 at the chain's start
        assert f"Cast:{TensorProto.FLOAT16}" not in ops, (sink.name, chain)
        floats = [t for op, ins in chain if not op.startswith("Cast")
                  for t in ins if t in (TensorProto.FLOAT, TensorProto.FLOAT16)]
        assert floats and set(floats) == {TensorProto.FLOAT}, (sink.name, chain)
    # the rest of the graph is FP16 (the conversion did happen)
    assert any(types.get(i) == TensorProto.FLOAT16 for n in graph.node if n.op_type == "MatMul" for i in n.input)
