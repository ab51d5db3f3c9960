"""`icpd check-trt`: the static TensorRT check of exported graphs (no TensorRT needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from icpd.cli import app
from icpd.trt.check import (
    BUILT_ROLES,
    TOPK_MAX_K,
    check_graph,
    check_model_dir,
    normalize_trt_version,
)

runner = CliRunner()
SHARED_MATRIX = Path(__file__).resolve().parents[2].parent / "shared" / "third_party" / "tensorrt" / "onnx-parser"
F32, I64 = TensorProto.FLOAT, TensorProto.INT64


def model(nodes, inputs, outputs, inits=(), opset=18):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def vi(name, dtype=F32, shape=(2, 8)):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def topk_graph(k: int = 3, sorted_: int = 1):
    return model([helper.make_node("TopK", ["x", "k"], ["v", "i"], name="my_topk", axis=-1, sorted=sorted_)],
                 [vi("x", shape=(2, 5000))], [vi("v", shape=(2, k)), vi("i", I64, (2, k))],
                 [helper.make_tensor("k", I64, [1], [k])])


# -- exported model dirs -----------------------------------------------------------------------
@pytest.mark.parametrize("version", ["10.3", "11"])
def test_sort_and_plugin_exports_pass(tiny_sort_dir, tiny_plugin_dir, version):
    for d in (tiny_sort_dir, tiny_plugin_dir):
        report = check_model_dir(d, version)
        assert report.passed, report.format_table()
        assert report.graphs == ["encoder.onnx", "matcher.onnx"]


def test_topk_export_fails_naming_the_topk_and_its_reducesum(tiny_model_dir):
    report = check_model_dir(tiny_model_dir, "11")
    assert not report.passed
    topk = [v for v in report.violations if v.op == "TopK"]
    inputs = json.loads((tiny_model_dir / "model.json").read_text())["matcher"]["inputs"]
    assert len(topk) == sum(n.startswith("support_mask_") for n in inputs) == 14  # a Scan body per level (13 + CLIP)
    v = topk[0]
    assert v.graph == "matcher.onnx" and ".body/" in v.node  # inside the Scan body
    assert "`K` must be a shape tensor" in v.rule and "ReduceSum '" in v.rule and "input 'r' of the body" in v.rule
    assert "--rank-prior sort" in v.fix
    assert any(v.op == "Range" and "ReduceSum" in v.rule for v in report.violations)
    assert {v.op for v in report.violations} == {"TopK", "Range"}  # nothing else in the topk export


def test_cli_exit_codes_and_table(tiny_sort_dir, tiny_model_dir):
    res = runner.invoke(app, ["check-trt", str(tiny_sort_dir), "--trt-version", "11"])
    assert res.exit_code == 0, res.output
    assert "TensorRT 11: encoder.onnx, matcher.onnx pass the static check" in res.output
    assert "preprocess.onnx: no engine is built from it" in res.output  # a note, not a violation
    res = runner.invoke(app, ["check-trt", str(tiny_model_dir)])
    assert res.exit_code == 1
    head = res.output.splitlines()[:3]
    assert head[0].startswith("TensorRT 10.3: 28 violation(s)")
    assert head[1].split()[:5] == ["graph", "node", "op", "rule", "fix"]
    assert "TopK" in res.output and "ReduceSum" in res.output
    quiet = runner.invoke(app, ["check-trt", str(tiny_sort_dir), "-q"])
    assert quiet.exit_code == 0 and quiet.output == ""


def test_cli_user_errors_exit_2(tiny_sort_dir, tmp_path):
    res = runner.invoke(app, ["check-trt", str(tiny_sort_dir), "--trt-version", "9"])
    assert res.exit_code == 2 and "--trt-version '9': choose one of 10.3, 11" in res.output
    res = runner.invoke(app, ["check-trt", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "error:" in res.output


def test_build_runs_the_check_first(tiny_model_dir, tmp_path):
    """`icpd build` on a topk export stops with the same table (before TensorRT is even imported)."""
    res = runner.invoke(app, ["build", "--model", str(tiny_model_dir), "--out", str(tmp_path / "e")])
    assert res.exit_code == 2
    assert "violation(s) in encoder.onnx, matcher.onnx" in res.output and "TopK" in res.output
    assert "cannot build these graphs" in res.output and "TensorRT is not available" not in res.output
    assert not (tmp_path / "e").exists()


def test_build_roles_are_the_checked_ones():
    from icpd.trt.build import ENGINE_ROLES

    assert tuple(ENGINE_ROLES) == BUILT_ROLES


# -- hand-made graphs ------------------------------------------------------------------------------
def test_unsupported_op_is_named():
    m = model([helper.make_node("Unique", ["x"], ["y"], name="the_unique")], [vi("x")], [vi("y")])
    (v,) = check_graph(m, "10.3", "g.onnx")
    assert (v.node, v.op) == ("the_unique", "Unique") and "not supported" in v.rule
    m = model([helper.make_node("FooBar", ["x"], ["y"], name="foo")], [vi("x")], [vi("y")])
    assert "not in TensorRT's ONNX operator matrix" in check_graph(m)[0].rule


def test_topk_sorted_0_and_k_limit():
    (v,) = check_graph(topk_graph(sorted_=0))
    assert (v.node, v.op, v.rule) == ("my_topk", "TopK", "`sorted` must be 1")
    assert check_graph(topk_graph(k=TOPK_MAX_K - 1)) == []
    (v,) = check_graph(topk_graph(k=TOPK_MAX_K))
    assert f"must be less than {TOPK_MAX_K}" in v.rule and "--rank-prior plugin" in v.fix


def test_shape_from_shape_ops_passes_and_from_values_fails():
    """Reshape's shape from Shape -> Gather -> Concat is a shape tensor; from ReduceMax of the data it is not."""
    inits = [helper.make_tensor("i0", I64, [1], [0]), helper.make_tensor("minus1", I64, [1], [-1])]
    good = model([helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "i0"], ["b"], axis=0),
                  helper.make_node("Concat", ["b", "minus1"], ["shape"], axis=0),
                  helper.make_node("Reshape", ["x", "shape"], ["y"], name="r")], [vi("x")], [vi("y")], inits)
    assert check_graph(good) == []
    bad = model([helper.make_node("ReduceMax", ["x"], ["m"], name="the_max", keepdims=0),
                 helper.make_node("Cast", ["m"], ["mi"], to=I64, name="cast"),
                 helper.make_node("Unsqueeze", ["mi", "i0"], ["shape1"], name="unsq"),
                 helper.make_node("Concat", ["shape1", "minus1"], ["shape"], axis=0, name="cat"),
                 helper.make_node("Reshape", ["x", "shape"], ["y"], name="r")], [vi("x")], [vi("y")], inits)
    (v,) = check_graph(bad)
    assert v.node == "r" and v.op == "Reshape"
    assert "Concat 'cat' <- Unsqueeze 'unsq' <- Cast 'cast' <- ReduceMax 'the_max'" in v.rule


def test_axes_must_be_initializers_and_custom_nodes_refused():
    m = model([helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Slice", ["s", "st", "en"], ["ax"]),
               helper.make_node("ReduceSum", ["x", "ax"], ["y"], name="red")], [vi("x")], [vi("y", shape=(2,))],
              [helper.make_tensor("st", I64, [1], [0]), helper.make_tensor("en", I64, [1], [1])])
    (v,) = check_graph(m)
    assert v.node == "red" and v.rule == "`axes` must be an initializer"
    custom = model([helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft", name="ms")], [vi("x")], [vi("y")])
    custom.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    (v,) = check_graph(custom)
    assert v.node == "ms" and "only icpd's NdcgPrior plugin node is allowed" in v.rule


def test_resize_modes_and_opset_range():
    roi, scales = helper.make_tensor("roi", F32, [0], []), helper.make_tensor("scales", F32, [4], [1, 1, 2, 2])
    m = model([helper.make_node("Resize", ["x", "roi", "scales"], ["y"], name="rs", mode="cubic", antialias=1)],
              [vi("x", shape=(1, 1, 4, 4))], [vi("y", shape=(1, 1, 8, 8))], [roi, scales])
    rules = sorted(v.rule for v in check_graph(m))
    assert rules[0] == "antialias=1 is not supported" and rules[1].startswith("mode='cubic'")
    old = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x")], [vi("y")], opset=21)
    assert "opset 21 outside TensorRT 10.3's range 9..20" in check_graph(old)[0].rule


def test_data_dependent_loop_condition_is_refused():
    body = helper.make_graph(
        [helper.make_node("ReduceMax", ["v_in"], ["m"], keepdims=0),
         helper.make_node("Greater", ["m", "zero"], ["c_out"]),
         helper.make_node("Identity", ["v_in"], ["v_out"]), helper.make_node("Identity", ["v_in"], ["scan"])],
        "body", [vi("i", I64, ()), vi("c_in", TensorProto.BOOL, ()), vi("v_in")],
        [vi("c_out", TensorProto.BOOL, ()), vi("v_out"), vi("scan")], [helper.make_tensor("zero", F32, [], [0.0])])
    m = model([helper.make_node("Loop", ["n", "cond", "x"], ["v", "s"], body=body, name="loop")], [vi("x")],
              [vi("v"), vi("s", shape=(None, 2, 8))],
              [helper.make_tensor("n", I64, [], [3]), helper.make_tensor("cond", TensorProto.BOOL, [], [True])])
    (v,) = check_graph(m)
    assert v.node == "loop" and "scan output length cannot be dynamic" in v.rule


def test_trt_versions():
    assert normalize_trt_version("10.3") == "10.3" and normalize_trt_version("10.8.0") == "10.3"
    assert normalize_trt_version("11") == normalize_trt_version("11.1") == "11"
    for bad in ("9.2", "12", "ten"):
        with pytest.raises(ValueError, match=f"^trt_version='{bad}': choose one of 10.3, 11"):
            normalize_trt_version(bad)


# -- the matrix data file -------------------------------------------------------------------------
def test_packaged_matrix_records_its_source_and_versions():
    from icpd.trt.operators import operator_matrix

    m = operator_matrix()
    assert m["source"]["repository"] == "https://github.com/onnx/onnx-tensorrt" and m["source"]["branch"] == "10.1-GA"
    assert set(m["tensorrt_versions"]) == {"10.3", "11"}
    assert m["operators"]["TopK"]["restrictions"].startswith("`sorted` must be 1.")
    assert not m["operators"]["Unique"]["supported"]


@pytest.mark.skipif(not (SHARED_MATRIX / "operators-10.1-GA.md").is_file(),
                    reason="third_party/tensorrt copy not found")
def test_packaged_matrix_matches_the_markdown():
    from icpd.trt.operators import operator_matrix, parse_operator_matrix

    parsed = parse_operator_matrix((SHARED_MATRIX / "operators-10.1-GA.md").read_text())
    packaged = operator_matrix()
    assert parsed["opset"] == packaged["tensorrt_versions"]["10.3"]["opset"]
    assert parsed["operators"].keys() == packaged["operators"].keys()
    for op, entry in parsed["operators"].items():
        if op != "ConstantOfShape":  # the recorded edit: the source's typo INF64
            assert entry == packaged["operators"][op], op
