"""The plugin-form matcher (NdcgPrior nodes) runs in ONNX Runtime with the CPU custom op and
matches the standard form."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

pytest.importorskip("onnxruntime_extensions",
                    reason="needs onnxruntime-extensions (pip install onnxruntime-extensions)")


def test_plugin_nodes_are_in_the_graph(tiny_plugin_dir):
    g = onnx.load(str(tiny_plugin_dir / "matcher.onnx"), load_external_data=False).graph
    nodes = [n for n in g.node if n.op_type == "NdcgPrior"]
    assert nodes and not any(n.op_type == "TopK" for n in g.node)
    attrs = {a.name: a.s.decode() for a in nodes[0].attribute}
    assert nodes[0].domain == "icpd" and attrs == {"plugin_namespace": "icpd", "plugin_version": "1"}


def test_custom_op_matches_the_reference():
    from icpd.kernels.ort_custom_op import ndcg_prior_numpy
    from icpd.model.rank_prior import ndcg_prior_op

    g = torch.Generator().manual_seed(0)
    q, s = torch.randint(-3, 4, (2, 50, 8), generator=g).float(), torch.randint(-3, 4, (2, 70, 8), generator=g).float()
    r = (torch.rand(2, 70, generator=g) < 0.3).float()
    got = ndcg_prior_numpy(q.numpy(), s.numpy(), r.numpy())
    assert got.dtype == np.float32 and got.shape == (2, 50)
    np.testing.assert_array_equal(got, ndcg_prior_op(q, s, r).numpy())


def test_plugin_form_matches_standard_form(tiny_model, tiny_model_dir, tiny_plugin_dir):
    from icpd.export.onnx import example_images, example_support_masks, matcher_inputs
    from icpd.export.ort_session import ort_session
    from icpd.export.wrappers import MATCHER_OUTPUTS_ALL, matcher_input_names

    p = tiny_model.preset
    names = matcher_input_names(p, p.fusion_weight > 0)
    standard = ort_session(tiny_model_dir / "matcher.onnx")
    plugin = ort_session(tiny_plugin_dir / "matcher.onnx", custom_ops=True)
    for shots in (1, 3):
        emb = torch.randn(p.num_classes, p.embed_dim, generator=torch.Generator().manual_seed(shots))
        args = matcher_inputs(tiny_model, example_images(2, p.image_size, 10 + shots),
                              example_images(shots, p.image_size, 20),
                              example_support_masks(shots, p.image_size, 30), emb)
        feeds = {n: a.numpy() for n, a in zip(names, args)}
        a, b = standard.run(None, feeds), plugin.run(None, feeds)
        for name, x, y in zip(MATCHER_OUTPUTS_ALL, a, b):
            # both compute |s|^2 - 2<q,s> in float32 and break ties by lower index; the GEMMs differ in
            # summation order, so near-equal distances may swap: bounded by the export's pyramid tolerance
            assert np.abs(x - y).mean() < 1e-4, name
            assert np.percentile(np.abs(x - y), 99) < 1e-3, name
        np.testing.assert_array_equal(a[0].argmax(1), b[0].argmax(1))


def test_validate_runs_the_plugin_form_in_ort(tiny_plugin_dir):
    from icpd.apps.validate import validate_model

    report = validate_model(tiny_plugin_dir, ("ort",), runs=1, batch=1)
    ort = report.backends["ort"]
    assert ort.passed and ort.outputs["query_prior"].max_abs < 1e-3
