"""The NdcgPrior plugin's GPU-free logic against the ONNX node the exporter writes.

TensorRT's ONNX parser hands the plugin creator the node's attributes as fields and calls the
plugin's shape/type functions with the node's input shapes. Without TensorRT these are checked
here: the fields the C++ plugin parses and serialises (none) vs the node's attributes (only the
two the parser consumes for the lookup), the output shape/type rule of ``getOutputShapes`` /
``getOutputDataTypes`` vs what the node produces with the CPU reference (ONNX Runtime custom op).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from icpd.config import RankPriorForm
from icpd.kernels import trt_plugin
from icpd.kernels.trt_plugin import ONNX_ATTRIBUTES, OP_TYPE

PLUGIN_DIR = Path(trt_plugin.__file__).parent / "plugin"
SOURCE, HEADER = PLUGIN_DIR / "NdcgPriorPlugin.cpp", PLUGIN_DIR / "NdcgPriorPlugin.h"


class Prior(torch.nn.Module):
    def forward(self, query, support, relevance):
        return torch.ops.icpd.ndcg_prior(query, support, relevance)


@pytest.fixture(scope="module")
def plugin_graph(tmp_path_factory):
    from icpd.export.rank_prior_onnx import translation_table

    n, nq, ns = (torch.export.Dim(name, min=1, max=4096) for name in ("n", "nq", "ns"))
    args = (torch.randn(2, 10, 4), torch.randn(2, 12, 4), (torch.rand(2, 12) > 0.5).float())
    path = tmp_path_factory.mktemp("plugin") / "p.onnx"
    torch.onnx.export(Prior().eval(), args, str(path), dynamo=True, opset_version=18,
                      input_names=["q", "s", "r"], output_names=["prior"],
                      dynamic_shapes=({0: n, 1: nq}, {0: n, 1: ns}, {0: n, 1: ns}), verbose=False,
                      custom_translation_table=translation_table(RankPriorForm.PLUGIN))
    return path


def test_node_attributes_are_the_parser_lookup_and_no_plugin_fields(plugin_graph):
    (node,) = [n for n in onnx.load(str(plugin_graph)).graph.node if n.op_type == OP_TYPE]
    assert node.domain == "icpd" and len(node.input) == 3 and len(node.output) == 1
    assert {a.name: a.s.decode() for a in node.attribute} == ONNX_ATTRIBUTES
    source, header = SOURCE.read_text(), HEADER.read_text()
    # the plugin serialises no fields and its creator declares none: nothing to lose in an engine file
    assert "mFieldsToSerialize{0, nullptr}" in header and "mFieldNames{0, nullptr}" in header
    assert "return &mFieldsToSerialize;" in source and "return &mFieldNames;" in source
    # createPlugin ignores the fields it is given (plugin_namespace/plugin_version are the parser's)
    create = re.search(r"NdcgPriorPluginCreator::createPlugin\(.*?\n}", source, flags=re.DOTALL).group(0)
    assert "fc->" not in create and "new NdcgPriorPlugin()" in create


def test_output_shape_and_type_rule_matches_the_node(plugin_graph):
    pytest.importorskip("onnxruntime_extensions", reason="the plugin node runs in ORT through onnxruntime-extensions")
    from icpd.export.ort_session import ort_session
    from icpd.model.rank_prior import ndcg_prior_reference

    source = SOURCE.read_text()
    # getOutputShapes: prior = (query.d[0], query.d[1]); getOutputDataTypes: always kFLOAT
    assert "outputs[0].nbDims = 2;" in source
    assert "outputs[0].d[0] = inputs[0].d[0];" in source and "outputs[0].d[1] = inputs[0].d[1];" in source
    assert "outputTypes[0] = nvinfer1::DataType::kFLOAT;" in source
    assert "inputs[0].nbDims != 3" in source and "inputs[1].nbDims != 3" in source and "inputs[2].nbDims != 2" in source
    sess = ort_session(plugin_graph, custom_ops=True)
    g = torch.Generator().manual_seed(0)
    for n, nq, ns in ((1, 7, 5), (3, 33, 20)):
        q, s = torch.randn(n, nq, 4, generator=g), torch.randn(n, ns, 4, generator=g)
        r = (torch.rand(n, ns, generator=g) > 0.5).float()
        (got,) = sess.run(None, {"q": q.numpy(), "s": s.numpy(), "r": r.numpy()})
        assert got.shape == (n, nq) and got.dtype == np.float32  # the C++ rule: (N, Nq), FP32
        np.testing.assert_array_equal(got, ndcg_prior_reference(q, s, r).numpy())


def test_static_check_accepts_the_node_and_refuses_a_wrong_version(plugin_graph):
    from icpd.trt.check import check_graph

    m = onnx.load(str(plugin_graph))
    assert check_graph(m, "10.3") == []
    (node,) = [n for n in m.graph.node if n.op_type == OP_TYPE]
    for a in node.attribute:
        if a.name == "plugin_version":
            a.s = b"2"
    (v,) = check_graph(m, "11")
    assert v.op == OP_TYPE and "plugin_version='1'" in v.rule
