"""`icpd data synth`, `icpd train`, `icpd eval` in-process (CliRunner) and once as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from typer.testing import CliRunner

from icpd.cli import app
from icpd.model.text import ClassEmbeddings, save_class_embeddings

runner = CliRunner()


def test_synth_train_eval(tmp_path: Path):
    root = tmp_path / "iSAID-5i"
    res = runner.invoke(app, ["data", "synth", "--out", str(root), "--layout", "isaid5i", "--tiles", "30",
                              "--seed", "1", "--size", "128"])
    assert res.exit_code == 0, res.output
    assert (root / "val" / "list" / "split0.txt").is_file()
    emb = save_class_embeddings(tmp_path / "emb.safetensors",
                                ClassEmbeddings(torch.randn(15, 32), tuple(f"c{i}" for i in range(15))))
    run = tmp_path / "run"
    common = ["--dataset", "isaid5i", "--root", str(root), "--fold", "0", "--shot", "1"]
    res = runner.invoke(app, ["train", *common, "--class-embeddings", str(emb), "--out", str(run), "--preset", "tiny",
                              "--epochs", "1", "--batch-size", "4", "--episodes-per-epoch", "4", "--val-episodes", "5",
                              "--lr", "1e-3"])
    assert res.exit_code == 0, res.output
    # the tiny preset trains its random encoders by default, and says so on one line (not wrapped
    # at 80 columns when captured)
    assert ("tiny preset: the encoders train with the prior learner and decoder "
            "(--freeze-encoders: keep them fixed)\n") in res.output
    log = json.loads((run / "metrics.jsonl").read_text())
    # scores are fractions everywhere a person reads them (issue 20: train/eval printed 26.67 for 0.2667)
    assert f"val mIoU {log['val_miou']:.4f}, FB-IoU {log['val_fb_iou']:.4f} (" in res.output
    assert f"best val mIoU {log['best_miou']:.4f} at epoch 1;" in res.output
    assert (run / "best.pt").is_file() and (run / "best.safetensors").is_file()
    out_json = tmp_path / "scores.json"
    # class embeddings come from the checkpoint's metadata (recorded by `icpd train`)
    res = runner.invoke(app, ["eval", *common, "--checkpoint", str(run / "best.safetensors"), "--episodes", "5",
                              "--json", str(out_json)])
    assert res.exit_code == 0, res.output
    data = json.loads(out_json.read_text())
    assert f"mIoU {data['miou']:.4f}  FB-IoU {data['fb_iou']:.4f}  (5 episodes" in res.stdout
    table_rows = [line.split("│") for line in res.stdout.splitlines() if line.count("│") == 5]
    assert [c.strip() for c in table_rows[-2][2:4]] == ["mIoU", f"{data['miou']:.4f}"], res.stdout
    assert [c.strip() for c in table_rows[-1][2:4]] == ["FB-IoU", f"{data['fb_iou']:.4f}"], res.stdout
    assert data["fold"] == 0 and data["episodes"] == 5 and 0.0 <= data["miou"] <= 1.0
    # the score equals the training run's validation of the same episodes
    line = json.loads((run / "metrics.jsonl").read_text())
    assert data["miou"] == line["val_miou"]
    res = runner.invoke(app, ["eval", *common, "--checkpoint", str(run / "best.pt"), "--preset", "tiny",
                              "--class-embeddings", str(emb), "--backend", "ort"])
    assert res.exit_code == 2 and "--model MODEL_DIR" in res.output


def test_missing_root_exits_2_with_the_path(tmp_path: Path):
    emb = save_class_embeddings(tmp_path / "emb.safetensors",
                                ClassEmbeddings(torch.randn(15, 32), tuple(f"c{i}" for i in range(15))))
    missing = tmp_path / "no-such-root"
    res = runner.invoke(app, ["train", "--dataset", "isaid5i", "--root", str(missing), "--fold", "0",
                              "--class-embeddings", str(emb), "--out", str(tmp_path / "run"), "--preset", "tiny",
                              "--quiet"])
    assert res.exit_code == 2
    assert "error:" in res.output and str(missing) in "".join(res.output.split("\n"))
    res = runner.invoke(app, ["eval", "--dataset", "isaid5i", "--root", str(missing), "--fold", "0",
                              "--checkpoint", str(tmp_path / "none.safetensors"), "--class-embeddings", str(emb)])
    assert res.exit_code == 2 and "none.safetensors" in res.output
    res = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "s"), "--layout", "coco", "--tiles", "5"])
    assert res.exit_code == 2 and "layout" in res.output


def test_synth_as_a_subprocess(tmp_path: Path):
    out = tmp_path / "DLRSD-5i"
    proc = subprocess.run(
        [sys.executable, "-m", "icpd.cli", "data", "synth", "--out", str(out), "--layout", "dlrsd5i", "--tiles", "6"],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout
    assert (out / "DLRSD_5i" / "val" / "fold2.txt").is_file()


def test_errors_holding_brackets_print_literally(tmp_path: Path):
    """Guards issue 10 defect 5: eval, train and data synth printed error text with rich markup on,
    so a path holding `[/red]` raised MarkupError (a traceback, not a one-line error) and `[bold]`
    vanished from the message. Each must print the message verbatim and exit 2."""
    emb = save_class_embeddings(tmp_path / "emb.safetensors",
                                ClassEmbeddings(torch.randn(15, 32), tuple(f"c{i}" for i in range(15))))
    missing = tmp_path / "sets[/red]" / "[bold]root"  # a closing tag with nothing to close: MarkupError
    common = ["--dataset", "isaid5i", "--root", str(missing), "--fold", "0", "--class-embeddings", str(emb), "--quiet"]
    for args in (["train", *common, "--out", str(tmp_path / "run"), "--preset", "tiny"],
                 ["eval", *common, "--checkpoint", str(tmp_path / "none[b].safetensors")]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args[0], res.output, res.exception)
        flat = "".join(res.output.split("\n"))
        assert "error:" in flat and ("[bold]root" in flat or "none[b].safetensors" in flat), (args[0], flat)
    res = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "s"), "--layout", "[bold]coco[/bold]",
                              "--tiles", "5"])
    assert res.exit_code == 2, (res.output, res.exception)
    assert "[bold]coco[/bold]" in "".join(res.output.split("\n"))
