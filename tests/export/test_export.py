"""`icpd export`: graphs, metadata, self-check, both rank-prior forms, refusals."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from icpd.artifacts.model_dir import ModelDir, ModelDirError
from icpd.export.onnx import OPSET, ExportError, export_model
from icpd.export.validate import TOLERANCES
from icpd.export.wrappers import MATCHER_OUTPUTS_ALL, encoder_output_names, matcher_input_names
from icpd.model.checkpoint import model_fingerprint


def test_model_dir_contents(tiny_model_dir, tiny_model):
    md = ModelDir.open(tiny_model_dir, verify=True)
    meta = md.meta
    assert meta["fingerprint"] == model_fingerprint(tiny_model)
    assert meta["preset"]["name"] == "tiny" and meta["opset"] == OPSET and meta["rank_prior"] == "topk"
    assert meta["normalization"]["mean"] == list(tiny_model.preset.mean)
    assert set(meta["files"]) == {"preprocess", "encoder", "matcher", "weights"}
    assert meta["matcher"]["inputs"]["query_layer00"][0] == "batch"
    assert meta["matcher"]["inputs"]["support_feat_clip"][0] == "shots"
    enc = onnx.load(str(md.file("encoder")), load_external_data=False)
    assert [o.name for o in enc.graph.output] == encoder_output_names(tiny_model.preset)
    mat = onnx.load(str(md.file("matcher")))
    assert [i.name for i in mat.graph.input] == matcher_input_names(tiny_model.preset, fusion=False)
    assert [o.name for o in mat.graph.output] == MATCHER_OUTPUTS_ALL
    assert {o.domain: o.version for o in mat.opset_import}[""] == OPSET
    ops = {n.op_type for n in mat.graph.node}
    assert "NdcgPrior" not in ops
    # the rank prior in standard ops: one Scan per level whose body sorts one (item, shot) with its own k
    scans = [n for n in mat.graph.node if n.op_type == "Scan"]
    assert len(scans) == tiny_model.preset.num_layers + 1
    body = next(a.g for a in scans[0].attribute if a.name == "body")
    assert {"TopK", "Gather", "MatMul"} <= {n.op_type for n in body.node}
    topk = {a.name: a.i for a in next(n for n in body.node if n.op_type == "TopK").attribute}
    assert topk["largest"] == 0 and topk["sorted"] == 1


def test_self_check_is_recorded_and_tight(tiny_model_dir):
    v = json.loads((tiny_model_dir / "model.json").read_text())["validation"]
    assert v["matcher_checked"] and v["runs"] == 2
    out = v["outputs"]
    assert out["logits"]["max_abs"] < 1e-4
    assert all(out[n]["max_abs"] <= 1e-4 * max(1.0, out[n]["ref_max"]) for n in out if n.startswith("feat_"))
    assert min(a["pixel_agreement"] for a in v["mask_agreement"]) >= 0.999
    assert {"max_abs", "mean_abs", "p99_abs", "max_rel", "mean_rel", "p99_rel"} <= set(out["logits"])


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory, tiny_model):
    return export_model(tiny_model, tmp_path_factory.mktemp("plugin") / "tiny", rank_prior="plugin",
                        validation_runs=1).path


def test_plugin_form_has_one_custom_node_per_level(plugin_dir, tiny_model):
    mat = onnx.load(str(plugin_dir / "matcher.onnx"))
    nodes = [n for n in mat.graph.node if n.op_type == "NdcgPrior"]
    assert len(nodes) == tiny_model.preset.num_layers + 1  # 13 backbone layers + the CLIP level
    for n in nodes:
        attrs = {a.name: a.s.decode() for a in n.attribute}
        assert attrs == {"plugin_namespace": "icpd", "plugin_version": "1"}
        assert n.domain == "icpd" and len(n.input) == 3 and len(n.output) == 1
    assert not {"TopK", "Scan"} & {n.op_type for n in mat.graph.node}
    meta = json.loads((plugin_dir / "model.json").read_text())
    # the self-check ran the plugin form in ORT through the CPU kernel of the custom node
    assert meta["rank_prior"] == "plugin" and meta["validation"]["matcher_checked"] is True


def test_plugin_model_runs_in_ort_like_the_standard_form(plugin_dir, tiny_model_dir, tiny_embeddings):
    from icpd.runtime.predictor import Predictor

    images = np.random.default_rng(0).integers(0, 256, (2, 128, 128, 3), dtype=np.uint8)
    mask = np.zeros((128, 128), np.uint8)
    mask[30:80, 40:90] = 1
    probs = []
    for d in (plugin_dir, tiny_model_dir):
        p = Predictor.load(d, backend="ort")
        p.add_support(p.encode_support([images[0]], [mask], "ship", tiny_embeddings))
        probs.append(p.predict(images).probs)
    np.testing.assert_allclose(probs[0], probs[1], atol=1e-5)


def test_existing_output_needs_force(tiny_model, tiny_model_dir):
    from icpd.commands.console import cli_text

    with pytest.raises(ExportError) as err:
        export_model(tiny_model, tiny_model_dir)
    # the library names its parameters; `icpd export` prints its flags
    assert str(err.value) == (f"out_dir={tiny_model_dir}: exists and is not empty; pass force=True to replace it "
                              "or choose another folder")
    assert cli_text(err.value).startswith(f"--out {tiny_model_dir}: exists and is not empty; pass --force to replace")


def test_failed_self_check_leaves_nothing(tiny_model, tmp_path, monkeypatch):
    import dataclasses

    from icpd.config import Precision

    strict = dataclasses.replace(TOLERANCES[Precision.FP32], logits_rel_to_scale=0.0, encoder_rel_to_scale=0.0)
    monkeypatch.setitem(TOLERANCES, Precision.FP32, strict)
    out = tmp_path / "m"
    with pytest.raises(ExportError, match="disagrees"):
        export_model(tiny_model, out, validation_runs=1)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_model_dir_refusals(tiny_model_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "matcher.onnx").unlink()
    with pytest.raises(ModelDirError, match="matcher.onnx"):
        ModelDir.open(broken)
    newer = tmp_path / "newer"
    shutil.copytree(tiny_model_dir, newer)
    meta = json.loads((newer / "model.json").read_text())
    meta["format_version"] = 99
    (newer / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelDirError, match="upgrade icpd"):
        ModelDir.open(newer)
    with pytest.raises(ModelDirError, match="model.json is missing"):
        ModelDir.open(tmp_path)


def test_corrupt_onnx_file_is_named(tiny_model_dir, tmp_path):
    import shutil

    from icpd.runtime.predictor import Predictor

    bad = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, bad)
    (bad / "matcher.onnx").write_bytes(b"\x08\x07not a model")
    with pytest.raises(ModelDirError, match="matcher.onnx.*bytes"):  # the size, checked on every open
        Predictor.load(bad, backend="ort")
    with pytest.raises(ModelDirError, match="matcher.onnx"):
        ModelDir.open(bad, verify_hashes=True)  # the former name of verify=True still works


def test_export_cli_in_process(tmp_path):
    from typer.testing import CliRunner

    from icpd.cli import app

    res = CliRunner().invoke(app, ["export", "--out", str(tmp_path / "m")])
    assert res.exit_code == 2 and "--checkpoint" in res.output
    assert not (tmp_path / "m").exists()
