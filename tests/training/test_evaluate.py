"""The evaluator against constructed predictions, its JSON, and the torch predictor's contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from icpd.data import fold_classes, synthesize
from icpd.training.evaluate import (
    EpisodePredictor,
    EvalResult,
    TorchEpisodePredictor,
    build_predictor,
    evaluate,
    make_dataset,
    result_table,
    spread_subset,
)


class FnPredictor:
    """Anything with predict_episodes is a predictor: here a function of the batch."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def predict_episodes(self, batch):
        return self.fn(batch)


@pytest.fixture(scope="module")
def val_set(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("synth") / "iSAID-5i"
    synthesize(root, "isaid5i", 30, seed=1, size=128)
    emb = torch.randn(15, 32, generator=torch.Generator().manual_seed(0))
    # 20 evenly spaced episodes cover the fold's 5 classes and keep data loading short
    return spread_subset(make_dataset("isaid5i", root, 0, "val", 1, emb, "tiny", seed=0), 20)


def test_ground_truth_scores_one_and_background_zero(val_set):
    gt = evaluate(FnPredictor(lambda b: b["query_mask"].bool()), val_set, batch_size=8)
    assert isinstance(FnPredictor(None), EpisodePredictor)
    assert gt.miou == 1.0 and gt.fb_iou == 1.0
    assert gt.class_ids == fold_classes(0) and gt.missing_classes == []
    assert gt.episodes == len(val_set)
    bg = evaluate(FnPredictor(lambda b: torch.zeros_like(b["query_mask"], dtype=torch.bool)), val_set, batch_size=8)
    assert bg.miou == 0.0
    assert 0.45 < bg.fb_iou < 0.5  # background IoU = 1 - foreground share (a few %), foreground IoU = 0


def test_all_foreground_iou_is_the_foreground_share(val_set):
    res = evaluate(FnPredictor(lambda b: torch.ones_like(b["query_mask"], dtype=torch.bool)), val_set, batch_size=5)
    for row in res.per_class.values():
        # prediction everywhere: I = |gt|, U = all pixels of that class's episodes
        assert row["iou"] == pytest.approx(row["intersection"] / (row["episodes"] * 128 * 128))
        assert row["name"]
    assert res.miou == pytest.approx(sum(r["iou"] for r in res.per_class.values()) / 5)


def test_json_and_table(val_set, tmp_path: Path):
    res = evaluate(FnPredictor(lambda b: b["query_mask"].bool()), spread_subset(val_set, 12), batch_size=4)
    assert res.episodes == 12
    path = res.write_json(tmp_path / "m" / "scores.json", fold=0)
    data = json.loads(path.read_text())
    assert data["miou"] == 1.0 and data["fold"] == 0 and data["episodes"] == 12
    assert set(data["per_class"]) == {str(c) for c in res.class_ids}
    assert data["episodes_per_second"] > 0
    assert result_table(res).row_count == len(res.class_ids) + 2


def test_missing_classes_are_reported(val_set):
    only_first = spread_subset(val_set, 1)
    res = evaluate(FnPredictor(lambda b: b["query_mask"].bool()), only_first, batch_size=1)
    assert len(res.class_ids) == 1 and len(res.missing_classes) == 4
    with pytest.raises(ValueError, match="no episodes of classes"):
        evaluate(FnPredictor(lambda b: b["query_mask"].bool()), only_first, class_ids=[res.missing_classes[0]])


def test_shape_mismatch_is_an_error(val_set):
    with pytest.raises(ValueError, match=r"expected \(4, 128, 128\)"):
        evaluate(FnPredictor(lambda b: torch.zeros(4, 64, 64, dtype=torch.bool)), val_set, batch_size=4)


def test_torch_predictor_returns_boolean_masks(val_set, tiny_model):
    sub = spread_subset(val_set, 2)
    batch = torch.utils.data.default_collate([sub[0], sub[1]])
    tiny_model.train()
    pred = TorchEpisodePredictor(tiny_model).predict_episodes(batch)
    assert pred.dtype == torch.bool and pred.shape == (2, 128, 128)
    assert tiny_model.training  # restored
    with torch.no_grad():
        tiny_model.eval()
        logits = tiny_model(batch["query"], batch["support_images"], batch["support_masks"], batch["class_embeddings"])
    assert torch.equal(pred, logits[:, 1] > logits[:, 0])


def test_backends():
    assert isinstance(build_predictor("torch", torch.nn.Identity()), TorchEpisodePredictor)
    for name in ("ort", "trt"):
        with pytest.raises(ValueError, match="model_dir=MODEL_DIR"):  # --model MODEL_DIR on the command line
            build_predictor(name, torch.nn.Identity())
    with pytest.raises(ValueError, match="^backend='jax': choose one of torch, ort, trt"):  # the registry's words
        build_predictor("jax", torch.nn.Identity())


def test_result_dict_roundtrip():
    res = EvalResult(0.5, 0.7, [1], {1: {"iou": 0.5, "intersection": 1, "union": 2, "episodes": 1}}, 1, 2.0)
    assert json.loads(res.to_json())["per_class"]["1"]["union"] == 2
    assert res.episodes_per_second == 0.5
