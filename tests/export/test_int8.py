"""INT8 model dirs (issues 13, 23): the encoder's MatMuls in INT8, the matcher FP32, an identity of its
own, a self-check that reports what INT8 costs, mixed precision when it misses the pass rule (blocks
kept FP32 by sensitivity or by the user, the speed-up that remains), and the task-level retention
on a trained model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from icpd.apps.validate import check_int8_against_fp32
from icpd.artifacts.model_dir import ModelDir
from icpd.cli import app
from icpd.commands.console import cli_text
from icpd.export import pass_rule
from icpd.export.calibration import SYNTHETIC_NOTE
from icpd.export.mixed_precision import quantized_nodes_of, summary_line
from icpd.export.quantize import (
    DEFAULT_OPTIONS,
    Int8ConversionError,
    Int8Options,
    convert_model_dir_int8,
    int8_fingerprint,
)

runner = CliRunner()


@pytest.fixture(scope="module")
def int8_dir(tmp_path_factory, tiny_model_dir):
    return convert_model_dir_int8(tiny_model_dir, tmp_path_factory.mktemp("int8") / "tiny-int8", DEFAULT_OPTIONS,
                                  check=check_int8_against_fp32).path


def test_int8_dir_quantizes_the_encoder_only_and_has_an_identity_of_its_own(int8_dir, tiny_model_dir):
    import onnx

    src, md = ModelDir.open(tiny_model_dir), ModelDir.open(int8_dir, verify=True)
    assert md.meta["precision"] == "int8" and md.meta["int8"]["options"] == DEFAULT_OPTIONS.as_dict()
    assert "VNNI" in md.meta["int8"]["why"]  # the choice is recorded with its reason
    assert md.meta["weights_fingerprint"] == src.fingerprint
    assert md.fingerprint == int8_fingerprint(src.fingerprint, DEFAULT_OPTIONS) != src.fingerprint
    assert int8_fingerprint(src.fingerprint, Int8Options()) != md.fingerprint  # the options are part of it
    ops = {n.op_type for n in onnx.load(str(md.file("encoder")), load_external_data=False).graph.node}
    assert "MatMulInteger" in ops and "Conv" in ops  # transformer MatMuls INT8, ResNet convs FP32
    assert md.meta["int8"]["encoder"]["quantized_ops"]["MatMulInteger"] >= 4
    for role in ("matcher", "preprocess", "weights"):  # byte for byte the FP32 files
        assert md.meta["files"][role]["sha256"] == src.meta["files"][role]["sha256"]
    calib = md.meta["int8"]["calibration"]
    assert calib["source"] == "built-in synthetic tiles" and calib["images"] > 0 and "used_for" in calib
    assert calib["note"] == SYNTHETIC_NOTE  # the fallback says so, and how to use the user's own tiles
    mixed = md.meta["int8"]["mixed_precision"]  # passed at once: nothing kept FP32, no sensitivity measured
    assert mixed["fp32_blocks"] == [] and mixed["sensitivity"] is None and len(mixed["steps"]) == 1
    assert mixed["matmuls"] == mixed["matmuls_int8"] == md.meta["int8"]["encoder"]["quantized_ops"]["MatMulInteger"]
    assert mixed["blocks"] == 6  # CLIP resize, 2 x (attention, MLP), projection
    speed = mixed["speed"]
    assert speed["speedup"] == pytest.approx(speed["fp32_ms"] / speed["int8_ms"]) and speed["rounds"] == 3


def test_the_quantizers_preprocessing_advice_is_not_printed(tiny_model_dir, tmp_path, caplog):
    """onnxruntime.quantization logs "Please consider to run pre-processing" on the root logger on
    every call; it reached `icpd export --precision int8` users' terminals. Other lines still pass."""
    import logging

    with caplog.at_level(logging.INFO):
        convert_model_dir_int8(tiny_model_dir, tmp_path / "q", DEFAULT_OPTIONS)
        logging.getLogger().warning("a warning of someone else's")
    messages = [r.getMessage() for r in caplog.records]
    assert not any("pre-processing" in m for m in messages)
    assert "a warning of someone else's" in messages


def test_self_check_reports_every_figure_and_passes_its_thresholds(int8_dir, tiny_model_dir):
    report = ModelDir.open(int8_dir).meta["int8"]["check"]
    preset = ModelDir.open(tiny_model_dir).preset
    assert set(report["encoder"]) == {f"feat_layer{i:02d}" for i in range(preset.num_layers)} | {"feat_clip"}
    assert report["thresholds"] == pass_rule.INT8_RULE.as_dict()
    for name, s in report["encoder"].items():
        assert {"cosine", "max_abs", "mean_abs"} <= set(s)
        assert s["cosine"] >= report["thresholds"]["min_encoder_cosine"]
        if name != "feat_clip":  # the ResNet maps are untouched: bit-identical
            assert s["max_abs"] == 0.0
    assert report["encoder"]["feat_clip"]["max_abs"] > 0  # the CLIP tokens did change: INT8 is not free
    assert 0 < report["query_prior_max_abs"] <= report["thresholds"]["max_query_prior_diff"]
    assert report["thresholds"]["min_rank_agreement"] <= report["rank_prior"]["agreement"] <= 1.0
    assert report["rank_prior"]["max_abs"] >= 0
    assert report["masks"]["mean_foreground_iou"] >= report["thresholds"]["min_mean_iou"]
    assert len(report["masks"]["episodes"]) == report["runs"] and report["passed"] and report["failures"] == []


def _check(runs: int):
    return lambda fp32_dir, int8_dir: check_int8_against_fp32(fp32_dir, int8_dir, runs=runs)


def test_a_tight_bound_keeps_the_most_sensitive_blocks_fp32_until_the_check_passes(int8_dir, tiny_model_dir, tmp_path,
                                                                                  monkeypatch):
    """The query prior bound is set to a quarter of what full INT8 gives here, so full INT8 fails;
    the fallback keeps blocks FP32, most sensitive first, until the check passes, and model.json
    records each kept block with its measured cost, every step, and the identity of the result."""
    from dataclasses import replace

    import onnx

    full = ModelDir.open(int8_dir).meta["int8"]["check"]["query_prior_max_abs"]
    tight = round(full / 4, 6)
    monkeypatch.setattr(pass_rule, "INT8_RULE", replace(pass_rule.INT8_RULE, max_query_prior_diff=tight))
    md = convert_model_dir_int8(tiny_model_dir, tmp_path / "mixed", DEFAULT_OPTIONS, check=_check(3))
    mixed = md.meta["int8"]["mixed_precision"]
    steps, kept, costs = mixed["steps"], mixed["fp32_blocks"], mixed["sensitivity"]["blocks"]
    assert steps[0]["kept_fp32"] == "nothing" and steps[0]["query_prior_max_abs"] == pytest.approx(full, rel=1e-6)
    assert f"query prior max |diff| {full:.4f} > {tight}" in steps[0]["failures"]
    assert [s["passed"] for s in steps] == [False] * (len(steps) - 1) + [True]  # until it passes, no further
    assert 1 <= len(kept) == len(steps) - 1 < mixed["blocks"] - 1
    ranking = sorted(costs, key=lambda b: -costs[b]["rel_error"])
    assert [k["block"] for k in kept] == [s["kept_fp32"] for s in steps[1:]] == ranking[: len(kept)]
    for k in kept:
        assert k["why"] == "sensitivity" and k["rel_error"] == costs[k["block"]]["rel_error"] > 0
    assert steps[-1]["query_prior_max_abs"] <= tight
    check = md.meta["int8"]["check"]
    assert check["passed"] and check["thresholds"]["max_query_prior_diff"] == tight
    # the graph: the kept MatMuls are FP32, the rest INT8, and the identity says which
    nodes = [n for k in kept for n in k["nodes"]]
    quantized = quantized_nodes_of(onnx.load(str(md.file("encoder")), load_external_data=False))
    assert not set(nodes) & set(quantized) and len(quantized) == mixed["matmuls_int8"] == mixed["matmuls"] - len(nodes)
    src = ModelDir.open(tiny_model_dir)
    assert md.fingerprint == int8_fingerprint(src.fingerprint, DEFAULT_OPTIONS, nodes)
    assert md.fingerprint != ModelDir.open(int8_dir).fingerprint
    line = summary_line(mixed)
    assert line.startswith(f"INT8: {len(quantized)} of {mixed['matmuls']} MatMuls quantized; "
                           f"kept in FP32: {kept[0]['block']} "
                           f"(sensitivity, rel. error ")
    assert f"encoder {mixed['speed']['speedup']:.2f}x FP32" in line


def test_int8_that_passes_only_with_everything_fp32_is_refused(tiny_model_dir, tmp_path, monkeypatch):
    """A bound no INT8 encoder meets (every encoder output as FP32 up to round-off: cosine 1 - 1e-7): the fallback
    keeps block after block FP32, stops before the last one (nothing INT8 would be left), and the
    conversion is refused with both verdicts, writing nothing."""
    from dataclasses import replace

    monkeypatch.setattr(pass_rule, "INT8_RULE", replace(pass_rule.INT8_RULE, min_encoder_cosine=1 - 1e-7))
    out = tmp_path / "never"
    with pytest.raises(Int8ConversionError) as err:
        convert_model_dir_int8(tiny_model_dir, out, DEFAULT_OPTIONS, check=_check(1))
    msg = str(err.value)
    assert msg.startswith("the INT8 self-check failed: feat_clip: cosine similarity 0.9")
    assert ("< 0.9999999 (gross error guard); with 5 of 6 blocks kept in FP32 (most sensitive first) "
            "it still failed: feat_clip") in msg
    assert msg.endswith("(rule: icpd.export.pass_rule); nothing written. Export FP32 instead (no precision=int8)")
    assert cli_text(err.value).endswith("Export FP32 instead (no --precision int8)")
    assert not out.exists() and not list(tmp_path.glob(".never*"))


def test_user_excluded_blocks_stay_fp32_and_unknown_patterns_are_refused(tiny_model_dir, tmp_path):
    import onnx

    md = convert_model_dir_int8(tiny_model_dir, tmp_path / "ex", DEFAULT_OPTIONS,
                                exclude=["*resblocks.1.mlp", "node_matmul_2"])
    mixed = md.meta["int8"]["mixed_precision"]
    assert [(k["block"], k["why"]) for k in mixed["fp32_blocks"]] == [
        ("cross_modal_visual_backbone.transformer.resblocks.1.mlp", "--int8-exclude"),
        ("node_matmul_2", "--int8-exclude")]
    nodes = [n for k in mixed["fp32_blocks"] for n in k["nodes"]]
    assert len(nodes) == 3 and mixed["sensitivity"] is None  # no check given: no fallback
    quantized = quantized_nodes_of(onnx.load(str(md.file("encoder")), load_external_data=False))
    assert not set(nodes) & set(quantized) and len(quantized) == mixed["matmuls"] - 3
    with pytest.raises(Int8ConversionError, match=r"^exclude='\*resblock\.9\*': matches no quantized block or "
                                                  r"MatMul of the encoder; blocks: node_matmul_1, cross_modal_visual"):
        convert_model_dir_int8(tiny_model_dir, tmp_path / "none", DEFAULT_OPTIONS, exclude=["*resblock.9*"])
    with pytest.raises(Int8ConversionError, match="keeps every quantized block FP32, so nothing would be INT8"):
        convert_model_dir_int8(tiny_model_dir, tmp_path / "all", DEFAULT_OPTIONS, exclude=["*"])
    assert not (tmp_path / "none").exists() and not (tmp_path / "all").exists()


def test_min_speedup_refuses_an_int8_dir_that_no_longer_pays(tiny_model_dir, tmp_path):
    """No encoder is 1000x faster in INT8: the conversion says by how much it is, and writes nothing."""
    out = tmp_path / "slow"
    with pytest.raises(Int8ConversionError,
                       match=r"^min_speedup=1000: the INT8 encoder is only \d+\.\d\dx as fast "
                             r"as FP32 on this CPU \(\d+ -> \d+ ms, FP32 blocks: 0\); nothing written\. "
                             r"Export FP32 \(no precision=int8\), or lower min_speedup$") as err:
        convert_model_dir_int8(tiny_model_dir, out, DEFAULT_OPTIONS, min_speedup=1000)
    assert err.value.param == "min_speedup"  # the CLI (icpd export) prints it as --int8-min-speedup
    assert cli_text(err.value).endswith("Export FP32 (no --precision int8), or lower --int8-min-speedup")
    assert not out.exists() and not list(tmp_path.glob(".slow*"))
    with pytest.raises(Int8ConversionError, match=r"^min_speedup=0: give a ratio above 0"):
        convert_model_dir_int8(tiny_model_dir, out, DEFAULT_OPTIONS, min_speedup=0)
    md = convert_model_dir_int8(tiny_model_dir, out, DEFAULT_OPTIONS, min_speedup=0.01)  # a bound it meets
    assert md.meta["int8"]["mixed_precision"]["speed"]["speedup"] >= 0.01


def test_support_cache_of_the_other_precision_is_refused(int8_dir, tiny_model_dir, tmp_path):
    from icpd.artifacts.support_cache import SupportCacheError, SupportSet
    from icpd.runtime.predictor import Predictor

    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)]
    mask = np.zeros((128, 128), np.uint8)
    mask[30:80, 40:90] = 1
    emb = rng.standard_normal((15, 32)).astype(np.float32)
    p32, p8 = Predictor.load(tiny_model_dir, backend="ort"), Predictor.load(int8_dir, backend="ort")
    s32, s8 = (p.encode_support(pixels, [mask], "ship", emb) for p in (p32, p8))
    # the support features are not bit-identical (why the precision is part of the identity)
    assert not all(np.array_equal(s32.tensors[k], s8.tensors[k]) for k in s32.tensors)
    for support, other, made in ((s32, p8, "fp32"), (s8, p32, "int8")):
        path = support.save(tmp_path / f"{made}.support")
        with pytest.raises(SupportCacheError, match="was made with model"):
            SupportSet.load(path, other.fingerprint)
        with pytest.raises((SupportCacheError, ValueError), match="made with model"):
            other.add_support(support)
    p8.add_support(SupportSet.load(tmp_path / "int8.support", p8.fingerprint))  # its own is accepted
    assert p8.predict(pixels[0]).labels.shape == (1, 128, 128)


def test_icpd_validate_covers_int8_dirs_and_export_options_are_checked(int8_dir, tmp_path):
    res = runner.invoke(app, ["validate", "--model", str(int8_dir), "--backends", "ort", "--runs", "1"])
    assert res.exit_code == 0, res.output
    assert "precision int8" in res.output and "cosine" in res.output and "PASS" in res.output
    res = runner.invoke(app, ["export", "--out", str(tmp_path / "m"), "--random-weights", "--preset", "tiny",
                              "--calibration", str(tmp_path)])
    assert res.exit_code == 2 and "--calibration is for --precision int8" in res.output
    res = runner.invoke(app, ["export", "--out", str(tmp_path / "m"), "--random-weights", "--preset", "tiny",
                              "--precision", "int8", "--calibration", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "not a folder" in res.output


def test_export_cli_passes_int8_exclude_and_min_speedup_through(tmp_path):
    """`icpd export --precision int8 --int8-exclude P --int8-min-speedup X`: the options reach the
    conversion (one block kept FP32, the speed-up bound refuses: one error line, exit 2, nothing
    written); without --precision int8, or with a bound <= 0, they are refused before any work."""
    base = ["export", "--random-weights", "--preset", "tiny", "--out", str(tmp_path / "m")]
    res = runner.invoke(app, [*base, "--int8-exclude", "*resblocks.0.attn"])
    assert res.exit_code == 2 and "--int8-exclude and --int8-min-speedup are for --precision int8" in res.output
    res = runner.invoke(app, [*base, "--precision", "int8", "--int8-min-speedup", "0"])
    assert res.exit_code == 2 and "--int8-min-speedup 0: give a ratio above 0" in res.output
    res = runner.invoke(app, [*base, "--precision", "int8", "--no-validate", "-q",
                              "--int8-exclude", "*resblocks.0.attn", "--int8-min-speedup", "1000"])
    assert res.exit_code == 2, res.output
    assert "error: --int8-min-speedup 1000: the INT8 encoder is only" in res.output and "FP32 blocks: 1)" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "m").exists()


def test_calibration_folder_is_read_and_recorded(tmp_path):
    import cv2

    from icpd.export.calibration import calibration_images

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"t{i}.png"), np.full((40, 50, 3), 60 * i, np.uint8))
    images, meta = calibration_images(tmp_path, 128)
    assert len(images) == 3 and images[0].shape == (40, 50, 3)
    assert meta["files"] == ["t0.png", "t1.png", "t2.png"] and meta["images"] == 3
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Int8ConversionError, match="no .png/.jpg/.tif images"):
        calibration_images(empty, 128)


def test_the_users_tiles_are_what_the_conversion_measures_on(tiny_model_dir, tmp_path):
    """--calibration DIR: recorded with its files, no synthetic-fallback note, used for the speed-up
    check (and the sensitivity); the timing ran on its images."""
    import cv2

    tiles = tmp_path / "tiles"
    tiles.mkdir()
    rng = np.random.default_rng(3)
    for i in range(3):
        cv2.imwrite(str(tiles / f"tile{i}.png"), rng.integers(0, 256, (150, 140, 3), dtype=np.uint8))
    md = convert_model_dir_int8(tiny_model_dir, tmp_path / "q", DEFAULT_OPTIONS, calibration=tiles)
    calib = md.meta["int8"]["calibration"]
    assert calib["source"] == str(tiles.resolve()) and calib["files"] == ["tile0.png", "tile1.png", "tile2.png"]
    assert "note" not in calib
    assert calib["used_for"].startswith("sensitivity of the quantized blocks, the speed-up check")
    assert md.meta["int8"]["mixed_precision"]["speed"]["images"] == 2  # the first two of the user's three


# -- task-level retention: a tiny model that has learned something, FP32 vs INT8 through `icpd eval` -----
RETENTION_TOLERANCE = 0.01  # mIoU points (fractions): INT8 may lose at most 1 point (issue 13)


class _AllForeground:
    def predict_episodes(self, batch):
        import torch

        return torch.ones(batch["query_mask"].shape, dtype=torch.bool)


@pytest.mark.slow
def test_int8_keeps_the_miou_of_a_trained_tiny_model(tmp_path_factory):
    """Train the tiny preset briefly on synthetic iSAID-5i (the README's first-hour recipe, 2 of its
    30 epochs), export it in FP32 and INT8, and score both with `icpd eval --model DIR --backend ort`
    on the same 60 validation episodes.

    Measured (1 thread, seeded, so the same every run here): FP32 mIoU 0.2513 / FB-IoU 0.5646 (the
    training's own validation of these episodes in PyTorch: 0.2513; all-foreground 0.1009,
    all-background 0), INT8 the same to 4 decimals; on the README's fully trained model both score
    0.3396. ~100 s on a loaded 2-core machine, the ONNX export ~45 s of it."""
    import torch
    from rich.console import Console

    from icpd.data import synthesize
    from icpd.data.synthetic_embeddings import write_synthetic_embeddings
    from icpd.export.onnx import export_model
    from icpd.model.checkpoint import load_checkpoint
    from icpd.model.text import load_class_embeddings
    from icpd.training.evaluate import evaluate, make_dataset, spread_subset
    from icpd.training.train import TrainConfig, train

    base = tmp_path_factory.mktemp("retention")
    root = base / "iSAID-5i"
    synthesize(root, "isaid5i", 200, seed=0, size=128, zoom=4)  # zoom 4: objects the 128 px input can see
    emb = write_synthetic_embeddings(root, "isaid5i", "tiny")
    cfg = TrainConfig("isaid5i", root, 0, 1, emb, base / "run", preset="tiny", epochs=2, batch_size=8, lr=1e-3,
                      episodes_per_epoch=256, val_episodes=60, seed=0, quiet=True)  # encoders train (tiny default)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny net's ops are too small for 2 threads; under load 2 were 5-10x slower
    try:
        result = train(cfg, Console(stderr=True, quiet=True))
    finally:
        torch.set_num_threads(threads)
    fp32 = export_model(load_checkpoint(result.best_checkpoint), base / "fp32", validate=False, source="trained").path
    int8 = convert_model_dir_int8(fp32, base / "int8", DEFAULT_OPTIONS).path
    scores = {}
    for name, model in (("fp32", fp32), ("int8", int8)):
        out = base / f"{name}.json"
        res = runner.invoke(app, ["eval", "--dataset", "isaid5i", "--root", str(root), "--fold", "0",
                                  "--model", str(model), "--backend", "ort", "--class-embeddings", str(emb),
                                  "--episodes", "60", "--json", str(out), "-q"])
        assert res.exit_code == 0, res.output
        scores[name] = json.loads(out.read_text())
    val = spread_subset(make_dataset("isaid5i", root, 0, "val", 1, load_class_embeddings(emb).embeddings, "tiny"), 60)
    all_fg = evaluate(_AllForeground(), val, 8).miou
    print(f"retention (tiny, {cfg.epochs} x {cfg.episodes_per_epoch} training episodes, "
          f"val mIoU {result.best_miou:.4f}; "
          f"all-foreground {all_fg:.4f}): "
          + ", ".join(f"{k} mIoU {v['miou']:.4f} FB-IoU {v['fb_iou']:.4f}" for k, v in scores.items()))
    assert scores["fp32"]["episodes"] == scores["int8"]["episodes"] == len(val)
    # it has learned something (all-background scores 0, all-foreground `all_fg`), and ORT FP32 scores
    # what PyTorch scored on the same episodes during training
    assert scores["fp32"]["miou"] >= max(0.2, 2 * all_fg)
    assert scores["fp32"]["miou"] == pytest.approx(result.best_miou, abs=0.005)
    assert scores["int8"]["miou"] >= scores["fp32"]["miou"] - RETENTION_TOLERANCE
    assert abs(scores["int8"]["fb_iou"] - scores["fp32"]["fb_iou"]) <= 2 * RETENTION_TOLERANCE
    shutil.rmtree(base, ignore_errors=True)
