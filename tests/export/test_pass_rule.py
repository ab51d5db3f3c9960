"""The INT8 pass rule (issue 23): judged on masks, query prior and rank prior, cosine only as a guard;
the same rule for the export's self-check and `icpd validate` (both through Comparison / judge)."""

from __future__ import annotations

import numpy as np
import pytest

from icpd.config import Precision
from icpd.export import pass_rule, validate
from icpd.export.pass_rule import INT8_RULE, WHY, Int8Rule, judge_int8
from icpd.export.validate import Comparison, error_stats, judge

GOOD_MASKS = [{"pixel_agreement": 0.999, "foreground_iou": 0.99}]


def _stats(name: str, cosine: float = 1.0, max_abs: float = 0.0) -> validate.ErrorStats:
    return validate.ErrorStats(name, max_abs, max_abs / 2, max_abs, 0.0, 0.0, 0.0, 1.0, cosine)


def test_every_bound_is_stated_with_a_reason_in_one_place():
    assert set(WHY) == set(Int8Rule().as_dict()) - {"rank_tolerance"}
    assert INT8_RULE == Int8Rule(min_mean_iou=0.95, min_pixel_agreement=0.98, max_query_prior_diff=0.05,
                                 min_rank_agreement=0.99, rank_tolerance=0.01, min_encoder_cosine=0.99)
    described = pass_rule.describe()
    assert described["module"] == "icpd.export.pass_rule" and described["thresholds"] == INT8_RULE.as_dict()
    # validate's table shows the shared bounds, and INT8_THRESHOLDS is the rule itself
    assert validate.TOLERANCES[Precision.INT8].min_mean_iou == INT8_RULE.min_mean_iou
    assert validate.INT8_THRESHOLDS is pass_rule.INT8_RULE


def test_a_cosine_below_the_old_bound_passes_when_priors_and_masks_agree():
    """The seeded paper checkpoints' CLIP tokens at cosine 0.9976 (refused under the old 0.999 bound):
    judged by what reaches the masks, they pass; a gross error (0.98, AVX2 saturation) does not."""
    ok = {"feat_clip": _stats("feat_clip", cosine=0.9976), "query_prior": _stats("query_prior", max_abs=0.02)}
    assert judge_int8(ok, GOOD_MASKS, [0.995]) == []
    gross = {**ok, "feat_clip": _stats("feat_clip", cosine=0.980)}
    assert judge_int8(gross, GOOD_MASKS, [0.995]) == ["feat_clip: cosine similarity 0.98000 < 0.99 (gross error guard)"]


def test_each_task_level_bound_fails_with_its_own_line():
    outputs = {"feat_clip": _stats("feat_clip", cosine=0.999), "query_prior": _stats("query_prior", max_abs=0.06)}
    masks = [{"pixel_agreement": 0.97, "foreground_iou": 0.96}, {"pixel_agreement": 0.99, "foreground_iou": 0.9}]
    assert judge_int8(outputs, masks, [0.995, 0.985]) == [
        "query prior max |diff| 0.0600 > 0.05",
        "rank prior agreement 0.9850 < 0.99 (values within 0.01)",
        "mask pixel agreement 0.9700 < 0.98",
        "mean foreground IoU 0.9300 < 0.95",
    ]
    # on the bounds: passes
    edge = {"query_prior": _stats("query_prior", max_abs=0.05), "feat_clip": _stats("feat_clip", cosine=0.99)}
    assert judge_int8(edge, [{"pixel_agreement": 0.98, "foreground_iou": 0.95}], [0.99]) == []


def test_validate_judges_int8_by_the_same_rule():
    """`icpd validate` and the export self-check judge through Comparison.failures -> judge; for INT8
    that is judge_int8, rank agreement measured per episode over every pyramid level's rank channels."""
    rng = np.random.default_rng(0)
    cmp = Comparison(Precision.INT8)
    ref_pyr = rng.random((1, 5, 4, 4))  # channels [cos, rank, cos, rank, query prior]
    moved = ref_pyr.copy()
    moved[0, 1, 0, :3] += 0.02  # 3 of the 32 rank values move beyond 0.01
    moved[0, 0] += 0.5  # cosine channels and the query prior channel are not rank values
    moved[0, 4] += 0.5
    cmp.add("pyramid_l3", moved, ref_pyr)
    qp = rng.random((1, 8, 8)).astype(np.float32)
    cmp.add("query_prior", qp + 0.07, qp)
    logits = rng.standard_normal((1, 2, 8, 8))
    cmp.add_masks(logits, logits)
    assert cmp.rank == [pytest.approx(29 / 32)]
    expected = ["query prior max |diff| 0.0700 > 0.05",
                f"rank prior agreement {29 / 32:.4f} < 0.99 (values within 0.01)"]
    assert cmp.failures() == expected
    assert judge(cmp.outputs, cmp.masks, "int8", rank=cmp.rank) == expected
    assert judge(cmp.outputs, [], "int8") == ["query prior max |diff| 0.0700 > 0.05",
                                               "no masks compared (the logits were not computed)"]


def test_a_rule_swapped_in_is_the_one_applied_and_reported(monkeypatch):
    strict = Int8Rule(max_query_prior_diff=0.001)
    monkeypatch.setattr(pass_rule, "INT8_RULE", strict)
    qp = error_stats("query_prior", np.full((1, 2, 2), 0.5), np.full((1, 2, 2), 0.498))
    assert judge_int8({"query_prior": qp}, GOOD_MASKS, []) == ["query prior max |diff| 0.0020 > 0.001"]
    assert validate.INT8_THRESHOLDS.as_dict()["max_query_prior_diff"] == 0.001
