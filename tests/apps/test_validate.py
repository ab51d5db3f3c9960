"""The validation harness shared by the export self-check, `icpd validate` and the FP16 check:
one seeded episode generator, one set of error statistics, one pass rule per precision."""

from __future__ import annotations

import numpy as np
import pytest

from icpd.config import Precision, get_preset
from icpd.export.validate import TOLERANCES, Comparison, ErrorStats, judge, seeded_episodes


def test_episodes_are_seeded_and_exercise_the_resize():
    p = get_preset("tiny")
    a, b = seeded_episodes(p, 3, seed=5), seeded_episodes(p, 3, seed=5)
    assert all(np.array_equal(x.query, y.query) and np.array_equal(x.embeddings, y.embeddings) for x, y in zip(a, b))
    assert not np.array_equal(a[0].query, seeded_episodes(p, 1, seed=6)[0].query)
    assert [len(e.support) for e in a] == [1, 2, 3] and all(e.query.dtype == np.uint8 for e in a)
    heights = {e.query.shape[1] for e in a}
    assert len(heights) == 3 and p.image_size not in heights  # never the preset's size: the resize runs
    assert all(m.any() and m.shape == s.shape[:2] for e in a for m, s in zip(e.masks, e.support))
    assert a[0].embeddings.shape == (p.num_classes, p.embed_dim)


def test_self_check_and_validate_share_the_harness():
    import icpd.export.onnx as export
    from icpd.apps import validate

    assert export.seeded_episodes is validate.seeded_episodes
    assert validate.IOU_RULE == {"fp32": 0.999, "fp16": 0.99, "int8": 0.95}


def _stats(name: str, max_abs: float = 0.0, mean_abs: float = 0.0, p99_abs: float = 0.0,
           ref_max: float = 1.0) -> ErrorStats:
    return ErrorStats(name, max_abs, mean_abs, p99_abs, 0.0, 0.0, 0.0, ref_max)


GOOD_MASKS = [{"pixel_agreement": 1.0, "foreground_iou": 1.0}]


@pytest.mark.parametrize(
    ("stats", "phrase"),
    [
        (_stats("feat_clip", max_abs=2e-4, ref_max=1.5), "feat_clip: max abs error"),  # > 1e-4 * 1.5
        (_stats("images", max_abs=1.1e-4), "images: max abs error"),
        (_stats("logits", max_abs=1.1e-3, ref_max=0.5), "logits: max abs error"),  # scale floored at 1
        (_stats("pyramid_l2", mean_abs=2e-4), "pyramid_l2: mean abs error"),
        (_stats("query_prior", p99_abs=2e-3), "query_prior: mean abs error"),
    ],
)
def test_fp32_rule_bounds_every_output(stats, phrase):
    failures = judge({stats.name: stats}, GOOD_MASKS, Precision.FP32)
    assert len(failures) == 1 and failures[0].startswith(phrase)
    assert judge({stats.name: stats}, GOOD_MASKS, Precision.FP16) == []  # FP16: errors reported, not bounded


def test_fp32_rule_at_its_bounds_passes():
    outputs = {"feat_clip": _stats("feat_clip", max_abs=1e-4 * 3.0, ref_max=3.0),
               "logits": _stats("logits", max_abs=1e-3),
               "pyramid_l4": _stats("pyramid_l4", mean_abs=1e-4, p99_abs=1e-3)}
    assert judge(outputs, [{"pixel_agreement": 0.999, "foreground_iou": 0.999}], Precision.FP32) == []


def test_mask_rule_per_precision():
    flips = [{"pixel_agreement": 0.995, "foreground_iou": 0.995}]
    assert judge({}, flips, Precision.FP32) == ["mask pixel agreement 0.9950 < 0.999",
                                                "mean foreground IoU 0.9950 < 0.999"]
    assert judge({}, flips, Precision.FP16) == []
    assert judge({}, [{"pixel_agreement": 0.99, "foreground_iou": 0.98}], "fp16") == [
        "mean foreground IoU 0.9800 < 0.99"]
    assert judge({}, [], Precision.FP32) == ["no masks compared (the logits were not computed)"]
    assert judge({}, [], Precision.FP32, require_masks=False) == []


def test_comparison_merges_episodes_and_judges():
    c = Comparison(Precision.FP32)
    ref = np.zeros((1, 2, 4, 4), np.float32)
    ref[:, 1, :2] = 1.0  # foreground in the top half
    c.add("logits", ref, ref)
    c.add("logits", ref + 5e-3, ref)  # one episode off by more than 1e-3 * max(1, 1)
    c.add_masks(ref, ref)
    assert c.outputs["logits"].max_abs == pytest.approx(5e-3) and c.mean_iou == 1.0
    assert c.failures() == ["logits: max abs error 0.005 (scale 1)"]


def test_validate_report_fails_an_fp32_backend_on_errors_alone():
    """`icpd validate` used to pass a backend on its masks alone; FP32 is now held to the
    self-check's bounds too."""
    from icpd.apps.validate import BackendReport, ValidationReport, format_report

    rep = BackendReport("ort", "fp32")
    rep.comparison.add("feat_clip", np.full((2, 3), 0.01, np.float32), np.zeros((2, 3), np.float32))
    rep.comparison.masks.extend(GOOD_MASKS)
    assert not rep.passed and rep.failures == ["feat_clip: max abs error 0.01 (scale 0)"]
    d = rep.as_dict()
    assert d["tolerance"] == TOLERANCES[Precision.FP32].as_dict() and d["failures"] == rep.failures
    text = format_report(ValidationReport("torch fp32", 1, {"ort": rep}))
    assert "failed: feat_clip: max abs error" in text and text.endswith("FAIL")
