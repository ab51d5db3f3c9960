"""FP16 model dirs: which ops stay FP32, FP32 graph I/O, model.json, and ORT (CPU) error stats vs FP32."""

from __future__ import annotations

import re

import onnx
import pytest
from onnx import TensorProto

pytest.importorskip("onnxconverter_common", reason="needs onnxconverter-common (pip install onnxconverter-common)")


@pytest.fixture(scope="module")
def fp16_dir(tiny_model_dir, tmp_path_factory):
    from icpd.apps.validate import check_fp16_against_fp32
    from icpd.export.fp16 import convert_model_dir_fp16

    return convert_model_dir_fp16(tiny_model_dir, tmp_path_factory.mktemp("fp16") / "tiny",
                                  check=check_fp16_against_fp32)


def graph(model_dir, role):
    return onnx.load(str(model_dir.path / f"{role}.onnx"))


def elem_types(model):
    g = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.input, *g.output]}
    types.update({t.name: t.data_type for t in g.initializer})
    return types


def test_model_json_says_fp16(fp16_dir, tiny_model_dir):
    from icpd.artifacts.model_dir import ModelDir

    src = ModelDir.open(tiny_model_dir)
    assert fp16_dir.meta["precision"] == "fp16" and src.meta["precision"] == "fp32"
    assert fp16_dir.fingerprint == src.fingerprint  # same weights: support caches stay valid
    ModelDir.open(fp16_dir.path, verify_hashes=True)
    fp32_data = (tiny_model_dir / "encoder.onnx.data").stat().st_size
    assert (fp16_dir.path / "encoder.onnx.data").stat().st_size < 0.6 * fp32_data


@pytest.mark.parametrize("role", ["encoder", "matcher"])
def test_graph_io_stays_fp32_and_passes_the_checker(fp16_dir, role):
    m = graph(fp16_dir, role)
    onnx.checker.check_model(m)
    for v in [*m.graph.input, *m.graph.output]:
        assert v.type.tensor_type.elem_type == TensorProto.FLOAT, v.name
    assert any(t.data_type == TensorProto.FLOAT16 for t in m.graph.initializer)  # the weights are FP16


@pytest.mark.parametrize("role", ["encoder", "matcher"])
def test_sensitive_ops_compute_in_fp32(fp16_dir, role):
    from icpd.export.fp16 import FP32_OPS

    m = graph(fp16_dir, role)
    types = elem_types(m)
    checked = 0
    for node in m.graph.node:
        if node.op_type in FP32_OPS:
            assert types.get(node.input[0]) == TensorProto.FLOAT, f"{node.op_type} {node.name} is not FP32"
            checked += 1
    assert checked > 0
    summary = fp16_dir.meta["fp16"]["graphs"][role]
    assert summary["fp16"] and not set(summary["fp16"]) & set(FP32_OPS)


def test_encoder_layernorm_softmax_fp32_and_convs_fp16(fp16_dir):
    s = fp16_dir.meta["fp16"]["graphs"]["encoder"]
    assert s["fp32"]["LayerNormalization"] > 0 and s["fp32"]["Softmax"] > 0
    assert s["fp16"]["Conv"] > 0 and s["fp16"]["MatMul"] > 0


def test_rank_prior_subgraph_and_logits_head_stay_fp32(fp16_dir, tiny_model_dir):
    from icpd.export.fp16 import output_head_nodes, rank_prior_nodes

    src = onnx.load(str(tiny_model_dir / "matcher.onnx"), load_external_data=False).graph
    rank = rank_prior_nodes(src)
    assert {n.op_type for n in src.node if n.name in rank} >= {"Scan", "MatMul"}  # the sorting Scan + the Gram GEMM
    head = output_head_nodes(src)
    assert "Conv" in {n.op_type for n in src.node if n.name in head}  # the final conv before the resize
    m = graph(fp16_dir, "matcher")
    types = elem_types(m)
    for node in m.graph.node:
        if (node.name in rank | head and node.input
                and types.get(node.input[0]) in (TensorProto.FLOAT, TensorProto.FLOAT16)):
            assert types[node.input[0]] == TensorProto.FLOAT, f"{node.op_type} {node.name}"
    # the Scan bodies (TopK, Gather, discounts) stay FP32, constants read from the main graph included
    inits = {i.name: i.data_type for i in m.graph.initializer}
    scans = [n for n in m.graph.node if n.op_type == "Scan"]
    assert scans
    for node in scans:
        body = next(a.g for a in node.attribute if a.name == "body")
        assert {i.type.tensor_type.elem_type for i in body.input} == {TensorProto.FLOAT}
        assert all(a.i != TensorProto.FLOAT16 for n in body.node if n.op_type == "Cast" for a in n.attribute)
        outer = {i for n in body.node for i in n.input if i in inits}
        assert all(inits[i] != TensorProto.FLOAT16 for i in outer)


def test_ort_error_stats_vs_fp32(fp16_dir):
    """ORT's CPU provider runs the FP16 graph (FP16 storage, Casts around ops it lacks FP16 kernels for).

    Loose bounds: FP16 keeps ~3 decimal digits; a rank channel moves by one DCG step wherever two
    support distances swap, so the pyramids are judged by mean and p99, not max.
    """
    check = fp16_dir.meta["fp16"]["check"]["backends"]["ort-fp16"]
    out = check["outputs"]
    assert check["precision"] == "fp16" and len(check["masks"]) == 2
    for name, s in out.items():
        if name.startswith("feat_") or name == "images":
            assert s["max_abs"] < 5e-3 * max(1.0, s["ref_max"]), name
    assert out["logits"]["max_abs"] < 1e-2 * max(1.0, out["logits"]["ref_max"])
    for name in ("query_prior", "pyramid_l4", "pyramid_l3", "pyramid_l2"):
        assert out[name]["mean_abs"] < 2e-3 and out[name]["p99_abs"] < 2e-2, name
    # random weights give near-zero logits (|logit| < 0.1), so argmax masks are fragile: only a loose floor here
    assert check["mean_foreground_iou"] > 0.9 and check["min_pixel_agreement"] > 0.98


def test_refuses_non_fp32_source_and_existing_out(fp16_dir, tiny_model_dir, tmp_path):
    from icpd.export.fp16 import Fp16ConversionError, convert_model_dir_fp16

    with pytest.raises(Fp16ConversionError, match="precision is 'fp16'; convert an FP32 model dir"):
        convert_model_dir_fp16(fp16_dir.path, tmp_path / "x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(Fp16ConversionError, match="exists and is not empty"):
        convert_model_dir_fp16(tiny_model_dir, tmp_path / "full")


def test_export_cli_precision_fp16(tmp_path):
    """`icpd export --precision fp16` writes an FP16 model dir and leaves no temporary FP32 export."""
    import json

    from typer.testing import CliRunner

    from icpd.cli import app

    out = tmp_path / "m16"
    res = CliRunner().invoke(app, ["export", "--random-weights", "--preset", "tiny", "--precision", "fp16",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "model.json").read_text())
    assert meta["precision"] == "fp16" and meta["preset"]["name"] == "tiny"
    assert [p.name for p in tmp_path.iterdir()] == ["m16"]  # the FP32 intermediate is gone
    # every long step says what it does and how long it took (issue 12: export printed nothing for minutes)
    assert re.search(r"building the model: done in \d+\.\d s", res.output), res.output
    assert re.search(r"converting to FP16 and checking against FP32: done in \d+\.\d s", res.output), res.output
    # the result line stays one line when captured (issue 16: it was wrapped at 80 columns in logs)
    result = re.search(rf"^wrote {re.escape(str(out))} \(fp16\) in [\d.]+ s; .*\d$", res.output, re.MULTILINE)
    assert result and len(result.group(0)) > 80, res.output
    res = CliRunner().invoke(app, ["export", "--random-weights", "--preset", "tiny", "--precision", "fp8",
                                   "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "fp8" in res.output
