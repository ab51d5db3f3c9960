"""The FP16 model dir's graphs stay valid ONNX after the FP16 round trips are dropped
(:func:`icpd.export.fp16.drop_fp16_round_trips` rewires Casts and removes the dead ones): the full
checker with shape inference passes, every node reads only values defined before it (no input
left pointing at a removed Cast) and every graph output stays FP32."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def fp16_sort_dir(tiny_sort_dir, tmp_path_factory):
    from icpd.export.fp16 import convert_model_dir_fp16

    return convert_model_dir_fp16(tiny_sort_dir, tmp_path_factory.mktemp("fp16-checked") / "fp16")


@pytest.mark.parametrize("role", ["encoder", "matcher"])
def test_fp16_graphs_pass_the_full_checker_with_fp32_outputs(fp16_sort_dir, role):
    import onnx
    from onnx import TensorProto

    model = onnx.load(str(fp16_sort_dir.file(role)), load_external_data=True)
    onnx.checker.check_model(model, full_check=True)
    graph = model.graph
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    for node in graph.node:
        missing = [i for i in node.input if i and i not in defined]
        assert not missing, (node.name, node.op_type, missing)
        defined.update(node.output)
    assert graph.output and {o.type.tensor_type.elem_type for o in graph.output} == {TensorProto.FLOAT}
