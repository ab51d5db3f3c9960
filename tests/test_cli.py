"""The CLI in-process (CliRunner) and once as a real subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from icpd.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_model):
    """A tiny checkpoint in the authors' layout, CLIP weights, class embeddings and images."""
    import open_clip

    from icpd.config import TINY_CLIP_CONFIG

    d = tmp_path_factory.mktemp("cli")
    torch.save(tiny_model.state_dict(), d / "tiny.pt")
    torch.manual_seed(0)
    torch.save(open_clip.CLIP(**TINY_CLIP_CONFIG).state_dict(), d / "clip.pt")
    rng = np.random.default_rng(0)
    for name, (h, w) in {"query": (150, 200), "s1": (128, 128), "s2": (160, 160)}.items():
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        cv2.rectangle(img, (20, 30), (70, 90), (200, 40, 40), -1)
        cv2.imwrite(str(d / f"{name}.png"), img)
        mask = np.zeros((h, w), np.uint8)
        mask[30:90, 20:70] = 255
        cv2.imwrite(str(d / f"{name}_mask.png"), mask)
    cv2.imwrite(str(d / "empty_mask.png"), np.zeros((128, 128), np.uint8))
    return d


def test_info_lists_presets_and_backends():
    res = runner.invoke(app, ["info"])
    assert res.exit_code == 0, res.output
    for word in ("paper", "paper-vgg16", "tiny", "backends", "onnxruntime"):
        assert word in res.output


def test_convert_checkpoint(files, tiny_model):
    from icpd.model.checkpoint import load_checkpoint, model_fingerprint

    out = files / "tiny.safetensors"
    res = runner.invoke(app, ["convert-checkpoint", str(files / "tiny.pt"), "--out", str(out), "--preset", "tiny",
                              "--shot", "1"])
    assert res.exit_code == 0, res.output
    assert model_fingerprint(load_checkpoint(out)) == model_fingerprint(tiny_model)
    assert out.with_suffix(".json").is_file()


def test_convert_checkpoint_wrong_preset_exits_2(files):
    res = runner.invoke(app, ["convert-checkpoint", str(files / "tiny.pt"), "--out", str(files / "x.safetensors")])
    assert res.exit_code == 2
    assert "does not match preset 'paper'" in res.output
    assert not (files / "x.safetensors").exists()


def test_unknown_preset_is_refused(files):
    res = runner.invoke(app, ["convert-checkpoint", str(files / "tiny.pt"), "--out", "x", "--preset", "huge"])
    assert res.exit_code != 0 and "unknown preset 'huge'" in res.output


def test_embed_text_writes_loadable_embeddings(files):
    from icpd.model.text import load_class_embeddings

    classes = ",".join(f"class {i}" for i in range(15))
    out = files / "emb.safetensors"
    res = runner.invoke(app, ["embed-text", "--clip-weights", str(files / "clip.pt"), "--classes", classes,
                              "--out", str(out), "--preset", "tiny"])
    assert res.exit_code == 0, res.output
    emb = load_class_embeddings(out, preset="tiny")
    assert emb.embeddings.shape == (15, 32) and emb.classes[3] == "class 3"
    assert not np.allclose(emb.embeddings[0], emb.embeddings[1])
    first = emb.for_target("class 7")
    assert np.array_equal(first[0], emb.embeddings[7]) and np.array_equal(first[1], emb.embeddings[0])


def _predict_args(files, masks=("s1_mask.png", "s2_mask.png")):
    return ["predict", "--checkpoint", str(files / "tiny.pt"), "--preset", "tiny", "--query", str(files / "query.png"),
            "--support", str(files / "s1.png"), "--mask", str(files / masks[0]),
            "--support", str(files / "s2.png"), "--mask", str(files / masks[1]),
            "--class-embeddings", str(files / "emb.safetensors"), "--target-class", "class 2"]


def test_predict_writes_mask_and_overlay_at_query_size(files):
    if not (files / "emb.safetensors").exists():
        test_embed_text_writes_loadable_embeddings(files)
    out = files / "pred"
    res = runner.invoke(app, [*_predict_args(files), "--out", str(out)])
    assert res.exit_code == 0, res.output
    mask = cv2.imread(str(out / "query_mask.png"), cv2.IMREAD_UNCHANGED)
    overlay = cv2.imread(str(out / "query_overlay.png"))
    assert mask.shape == (150, 200) and set(np.unique(mask)) <= {0, 255}
    assert overlay.shape == (150, 200, 3)


def test_predict_refuses_all_empty_masks(files):
    if not (files / "emb.safetensors").exists():
        test_embed_text_writes_loadable_embeddings(files)
    out = files / "pred_empty"
    res = runner.invoke(app, [*_predict_args(files, masks=("empty_mask.png", "empty_mask.png")), "--out", str(out)])
    # s2 is 160x160 and its mask 128x128: the size check fires first and names both files
    assert res.exit_code == 2
    args = _predict_args(files, masks=("empty_mask.png", "s2_mask.png"))
    args[args.index(str(files / "s2_mask.png"))] = str(files / "empty_mask.png")
    args[args.index(str(files / "s2.png"))] = str(files / "s1.png")
    res = runner.invoke(app, [*args, "--out", str(out)])
    assert res.exit_code == 2 and "support set 'class 2': every mask is empty" in res.output  # the Predictor's words
    assert not (out / "query_mask.png").exists()


def test_predict_holds_supports_to_the_predictors_rules_and_notes_upscaling(files):
    """`icpd predict` (torch eager) checks supports with the Predictor's rule (icpd.runtime.validation):
    a 1x1 support is refused in the same words, a 40 px one is upscaled and says so."""
    from icpd.runtime.validation import InputError, check_supports

    if not (files / "emb.safetensors").exists():
        test_embed_text_writes_loadable_embeddings(files)
    for side in (1, 40):
        img = np.full((side, side, 3), 120, np.uint8)
        mask = np.zeros((side, side), np.uint8)
        mask[side // 4:, side // 4:] = 255
        cv2.imwrite(str(files / f"small{side}.png"), img)
        cv2.imwrite(str(files / f"small{side}_mask.png"), mask)
    args = _predict_args(files)
    args[args.index(str(files / "s2.png"))] = str(files / "small1.png")
    args[args.index(str(files / "s2_mask.png"))] = str(files / "small1_mask.png")
    res = runner.invoke(app, [*args, "--out", str(files / "pred_small")])
    from icpd.io import read_image, read_mask

    tiny = read_image(files / "small1.png")
    with pytest.raises(InputError) as err:
        check_supports([read_image(files / "s1.png"), tiny],
                       [read_mask(files / "s1_mask.png"), read_mask(files / "small1_mask.png", like=tiny)],
                       "class 2", 128)
    assert res.exit_code == 2 and f"error: {err.value}" in " ".join(res.output.split())
    args[args.index(str(files / "small1.png"))] = str(files / "small40.png")
    args[args.index(str(files / "small1_mask.png"))] = str(files / "small40_mask.png")
    res = runner.invoke(app, [*args, "--out", str(files / "pred_small")])
    assert res.exit_code == 0, res.output
    assert f"note: image {files / 'small40.png'}: 40x40 px (HxW) upscaled to the model input 128x128" in \
        " ".join(res.output.split())


def test_predict_as_a_subprocess(files):
    if not (files / "emb.safetensors").exists():
        test_embed_text_writes_loadable_embeddings(files)
    exe = shutil.which("icpd")
    cmd = [exe] if exe else [sys.executable, "-m", "icpd.cli"]
    out = files / "pred_sub"
    proc = subprocess.run([*cmd, *_predict_args(files), "--out", str(out)], check=False, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (out / "query_mask.png").is_file() and "foreground" in proc.stdout


def test_predict_threshold_rule_is_infers(files, tiny_model):
    """Guards issue 10 defect 3: `icpd predict` used prob > threshold, `icpd infer` prob >= threshold.
    With the threshold set to the exact probability of one pixel, that pixel is foreground (>=),
    and the whole mask equals merge_labels (the runtime's rule) of the same probabilities."""
    from icpd.runtime.predictor import merge_labels
    from icpd.training.predict import predict_files, predict_probability

    if not (files / "emb.safetensors").exists():
        test_embed_text_writes_loadable_embeddings(files)
    args = (tiny_model, files / "query.png", [files / "s1.png"], [files / "s1_mask.png"], files / "emb.safetensors",
            "class 2")
    prob = predict_probability(*args).prob
    y, x = np.unravel_index(int(np.argmax(prob)), prob.shape)
    threshold = float(prob[y, x])  # float32 -> float: exact, so prob == threshold at (y, x)
    res = predict_files(*args, files / "pred_rule", threshold=threshold)
    mask = cv2.imread(str(res.mask), cv2.IMREAD_UNCHANGED)
    assert mask[y, x] == 255
    np.testing.assert_array_equal(mask, merge_labels(prob[None, None], threshold)[0] * 255)


def _commands():
    """{"export": click command, "data synth": ..., "bench": ...}: every leaf command of `icpd`."""
    import typer.main

    found = {}

    def walk(cmd, prefix):
        subs = getattr(cmd, "commands", None)
        if subs and prefix:  # a group with its own options (bench) counts as a command too
            found[prefix] = cmd
        for name, sub in (subs or {}).items():
            walk(sub, f"{prefix} {name}".strip())
        if not subs:
            found[prefix] = cmd

    walk(typer.main.get_command(app), "")
    return found


LONG_COMMANDS = ("export", "cache-support", "infer", "eval", "train", "bench", "data synth")


def test_every_long_command_has_quiet():
    """Issue 10 section 4: every long command takes -q/--quiet."""
    commands = _commands()
    for name in LONG_COMMANDS + tuple(n for n in ("build", "validate", "stream") if n in commands):
        opts = {o for p in commands[name].params for o in p.opts}
        assert {"-q", "--quiet"} <= opts, name


def test_model_means_the_exported_model_dir_everywhere():
    """Issue 10 section 4: `--model` means the same thing in every command: an exported model dir."""
    commands = _commands()
    with_model = {n: p for n, c in commands.items() for p in c.params if "--model" in p.opts}
    assert {"cache-support", "infer", "eval", "bench"} <= set(with_model)
    for name, param in with_model.items():
        assert "model dir" in param.help.lower() or "model directory" in param.help.lower(), (name, param.help)


def test_backend_and_precision_are_enum_choices():
    """Issue 10 section 4: --backend and --precision take the config enums' values only."""
    res = runner.invoke(app, ["infer", "x.png", "--model", "m", "--support", "s", "--out", "o", "--backend", "ort-cpu"])
    assert res.exit_code == 2 and "torch" in res.output and "trt" in res.output
    res = runner.invoke(app, ["export", "--out", "o", "--random-weights", "--precision", "fp8"])
    assert res.exit_code == 2 and "fp16" in res.output


def test_export_rank_prior_forms_and_the_old_onnx_name(tmp_path):
    """`--rank-prior topk|sort|plugin`; `onnx` (the old name of topk) still works, with a note."""
    res = runner.invoke(app, ["export", "--out", str(tmp_path / "m"), "--rank-prior", "fast"])
    assert res.exit_code == 2 and "topk, sort, plugin" in res.output
    missing = tmp_path / "none.safetensors"
    res = runner.invoke(app, ["export", "--out", str(tmp_path / "m"), "--checkpoint", str(missing),
                              "--rank-prior", "onnx"])
    assert "note: --rank-prior onnx is now called topk" in res.output
    assert res.exit_code == 2 and "error:" in res.output and "none.safetensors" in res.output  # parsed, then refused


def test_result_lines_are_not_wrapped_when_captured(tmp_path):
    """Guards issue 16: result lines were wrapped at 80 columns when stdout is not a terminal (a log
    line ended in `torch| = 3.43e-07`). A long `wrote ...` line must come out on one line."""
    out = tmp_path / ("a-rather-long-folder-name-" * 3) / "DLRSD-5i"
    proc = subprocess.run([sys.executable, "-m", "icpd.cli", "data", "synth", "--out", str(out), "--layout", "dlrsd5i",
                           "--tiles", "6", "--size", "64"], check=False, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and len(lines[0]) > 80, lines
    assert lines[0].startswith(f"wrote {out}") and "fewest tiles of any class" in lines[0]
