"""What `icpd build` decides before TensorRT is involved: profiles, the rank-prior form, TopK's limit."""

from __future__ import annotations

import json
import shutil

import pytest

from icpd.artifacts.model_dir import ModelDir
from icpd.config import RankPriorForm
from icpd.errors import ParamError
from icpd.trt.build import (
    TOPK_MAX_K,
    EngineBuildError,
    check_rank_prior,
    io_profiles,
    parse_profile,
    support_pixels,
)


def test_parse_profile():
    assert parse_profile("1,2,8", "batch") == (1, 2, 8)
    assert parse_profile("4", "shots") == (4, 4, 4)
    expected = {"1,2": "batch='1,2': give MIN,OPT,MAX (three integers), e.g. 1,1,4",
                "a,b,c": "batch='a,b,c': give MIN,OPT,MAX as integers, e.g. 1,1,4",
                "2,1,4": "batch=2,1,4: need 1 <= MIN <= OPT <= MAX",
                "0,1,1": "batch=0,1,1: need 1 <= MIN <= OPT <= MAX"}
    for bad, message in expected.items():  # the library names the parameter; `icpd build` prints --batch
        with pytest.raises(ParamError) as err:
            parse_profile(bad, "batch")
        assert str(err.value) == message and err.value.param == "batch"


def test_io_profiles_follow_model_json(tiny_model_dir):
    md = ModelDir.open(tiny_model_dir)
    enc = io_profiles(md, "encoder", (1, 2, 4), (1, 1, 5))
    s = md.preset.image_size
    assert enc == {"images": ((1, 3, s, s), (2, 3, s, s), (4, 3, s, s))}
    mat = io_profiles(md, "matcher", (1, 2, 4), (1, 3, 5))
    assert mat["query_layer00"][2][0] == 4 and mat["support_feat_layer00"][0][0] == 1
    assert mat["support_mask_clip"][1][0] == 3
    assert mat["class_embeddings"][0] == mat["class_embeddings"][2] == (md.preset.num_classes, md.preset.embed_dim)


def test_rank_prior_form_must_match_the_export(tiny_model_dir):
    md = ModelDir.open(tiny_model_dir)
    assert check_rank_prior(md, None) is RankPriorForm.TOPK
    assert check_rank_prior(md, "onnx") is RankPriorForm.TOPK  # the old name of topk, as users' scripts pass it
    with pytest.raises(EngineBuildError, match="exported with rank_prior=topk"):
        check_rank_prior(md, "plugin")
    with pytest.raises(ValueError, match="rank_prior='scan': choose one of topk, sort, plugin"):
        check_rank_prior(md, "scan")


def test_old_model_json_with_onnx_is_topk(tiny_model_dir, tmp_path):
    """Model dirs exported before the rename say "rank_prior": "onnx"; they keep building as topk."""
    d = tmp_path / "old"
    shutil.copytree(tiny_model_dir, d)
    meta = json.loads((d / "model.json").read_text())
    meta["rank_prior"] = "onnx"
    (d / "model.json").write_text(json.dumps(meta))
    md = ModelDir.open(d)
    assert check_rank_prior(md, None) == "topk" and check_rank_prior(md, "topk") == "topk"


@pytest.mark.parametrize("form", ["topk", "sort"])
def test_standard_forms_beyond_topk_limit_are_refused(tiny_model_dir, tmp_path, form):
    d = tmp_path / "big"
    shutil.copytree(tiny_model_dir, d)
    meta = json.loads((d / "model.json").read_text())
    meta["matcher"]["inputs"]["support_mask_layer00"] = ["shots", 4096, "float32"]
    meta["rank_prior"] = form
    (d / "model.json").write_text(json.dumps(meta))
    md = ModelDir.open(d)
    assert support_pixels(md) == 4096 > TOPK_MAX_K
    with pytest.raises(EngineBuildError,
                       match=f"the {form} rank prior .*beyond TensorRT's limit K < 3840.*--rank-prior plugin"):
        check_rank_prior(md, None)
