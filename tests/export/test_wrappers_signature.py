"""The matcher's I/O signature has one owner (icpd.artifacts.signature): the exported graph, the
model.json entry, MatcherGraph's unpacking and the support packing all follow it."""

from __future__ import annotations

import json

import onnx
import pytest
import torch

from icpd.artifacts.signature import MATCHER_OUTPUTS, MatcherSignature, level_names
from icpd.export.wrappers import MatcherGraph
from tests.conftest import tiny_inputs


def test_exported_matcher_and_model_json_follow_the_signature(tiny_model_dir, tiny_model):
    sig = MatcherSignature.for_preset(tiny_model.preset)
    graph = onnx.load(str(tiny_model_dir / "matcher.onnx"), load_external_data=False).graph
    assert [i.name for i in graph.input] == sig.inputs
    assert [o.name for o in graph.output] == list(MATCHER_OUTPUTS)
    entry = json.loads((tiny_model_dir / "model.json").read_text())["matcher"]
    assert list(entry["inputs"]) == sig.inputs and entry["outputs"] == list(MATCHER_OUTPUTS)
    for name, dims in entry["inputs"].items():  # batch on the query features, shots on the support inputs
        expected = "batch" if name.startswith("query_") else None if name == "class_embeddings" else "shots"
        assert (dims[0] if expected else None) == expected, name


def test_signature_names_and_axes():
    sig = MatcherSignature(("layer00", "clip"), fusion=True)
    assert sig.inputs == ["query_layer00", "query_clip", "support_feat_layer00", "support_feat_clip",
                          "support_norm_layer00", "support_norm_clip", "support_mask_layer00", "support_mask_clip",
                          "class_embeddings", "support_masks"]
    axes = sig.dynamic_axes("B", "K")
    assert axes[:2] == ({0: "B"}, {0: "B"}) and axes[8] is None and all(a == {0: "K"} for a in axes[2:8] + axes[9:])
    assert sig.missing_support({"support_feat_layer00": 0}) == sig.support_inputs[1:]
    with pytest.raises(ValueError, match="raw support masks"):  # a fusing preset needs them
        MatcherSignature(("clip",), fusion=True).pack_support(_prepared_stub(), torch.zeros(15, 4))


def _prepared_stub():
    from icpd.model.icpd_net import PreparedSupport

    t = torch.zeros(1, 1, 4, 9)
    return PreparedSupport(features=[t], norms=[t[:, :, 0]], masks=[t[:, :, 0]], clip_tokens=torch.zeros(1, 1, 3, 3, 4))


def test_packed_support_through_matcher_graph_equals_match_prepared(tiny_model):
    """pack_support + positional (what the export and every backend feed) == the network's own path."""
    q, s, m, e = tiny_inputs(batch=2, shots=3, seed=6)
    sig = MatcherSignature.for_preset(tiny_model.preset)
    assert list(sig.levels) == level_names(tiny_model.preset)
    with torch.no_grad():
        qf = tiny_model.encode(q)
        prepared = tiny_model.prepare_support(tiny_model.encode(s[1]), m[1:2])  # one support set for both queries
        emb = e[1]  # (15, D)
        args = sig.positional(qf.as_list(), sig.pack_support(prepared, emb, m[1]))
        got = MatcherGraph(tiny_model, all_outputs=True, rank="eager")(*args)
        ref = tiny_model.match_prepared(qf, prepared, e[1:2].expand(2, -1, -1), support_masks=m[1:2])
    unpacked = sig.unpack(args)
    assert unpacked.class_embeddings is emb and len(unpacked.query) == len(sig.levels)
    for name, a, b in zip(MATCHER_OUTPUTS, got, [ref.logits, ref.query_prior, *ref.pyramid]):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
