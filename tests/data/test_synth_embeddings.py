"""`icpd data synth` writes the class embeddings its data set needs (synthetic, per preset), and
`--help` shows flags without a `<bool>` type."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from icpd.cli import app
from icpd.data.dlrsd5i import CLASS_NAMES as DLRSD_NAMES
from icpd.data.isaid5i import CLASS_NAMES as ISAID_NAMES
from icpd.data.synthetic_embeddings import SYNTHETIC_MODEL, embeddings_path, write_synthetic_embeddings
from icpd.model.text import load_class_embeddings

runner = CliRunner()


def test_synth_writes_embeddings_the_tiny_preset_and_the_data_set_accept(tmp_path: Path) -> None:
    root = tmp_path / "data"
    res = runner.invoke(app, ["data", "synth", "--out", str(root), "--tiles", "10", "--size", "64", "-q"])
    assert res.exit_code == 0, res.output
    path = root / "class_embeddings_tiny.safetensors"
    assert path == embeddings_path(root, "tiny") and str(path) in res.output and "synthetic" in res.output
    emb = load_class_embeddings(path, preset="tiny")  # (15, 32), what `icpd train --preset tiny` checks
    assert tuple(emb.embeddings.shape) == (15, 32) and emb.classes == ISAID_NAMES
    assert emb.model == SYNTHETIC_MODEL and "not text embeddings" in emb.model and emb.normalized
    np.testing.assert_allclose(np.linalg.norm(np.asarray(emb.embeddings), axis=1), 1.0, rtol=1e-6)
    assert emb.index("storage tank") == 1  # `cache-support --class-name "storage tank"` finds its row
    from icpd.training.evaluate import make_dataset

    episode = make_dataset("isaid5i", root, 0, "trn", 1, emb.embeddings, "tiny")[0]
    assert tuple(episode["class_embeddings"].shape) == (15, 32)


def test_embeddings_are_seeded_per_layout_and_preset(tmp_path: Path) -> None:
    def read(path: Path) -> np.ndarray:
        return np.asarray(load_class_embeddings(path).embeddings)

    # (the header's key order is not fixed by safetensors, so compare contents, not bytes)
    a = read(write_synthetic_embeddings(tmp_path / "a", "isaid5i", "tiny", seed=0))
    np.testing.assert_array_equal(read(write_synthetic_embeddings(tmp_path / "b", "isaid5i", "tiny", seed=0)), a)
    assert not np.allclose(read(write_synthetic_embeddings(tmp_path / "c", "isaid5i", "tiny", seed=1)), a)
    dl = load_class_embeddings(write_synthetic_embeddings(tmp_path / "d", "dlrsd5i", "tiny"), preset="tiny")
    assert dl.classes == DLRSD_NAMES
    other = load_class_embeddings(tmp_path / "a" / "class_embeddings_tiny.safetensors").embeddings
    assert not np.allclose(np.asarray(dl.embeddings), np.asarray(other))
    paper = load_class_embeddings(write_synthetic_embeddings(tmp_path / "e", "isaid5i", "paper"), preset="paper")
    assert tuple(paper.embeddings.shape) == (15, 768)
    with pytest.raises(ValueError, match="layout"):
        write_synthetic_embeddings(tmp_path / "f", "coco", "tiny")


def test_synth_refuses_an_unknown_preset(tmp_path: Path) -> None:
    res = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "x"), "--preset", "huge"])
    assert res.exit_code == 2 and "unknown preset 'huge'" in res.output
    assert not (tmp_path / "x").exists()  # refused before any tile is drawn


@pytest.mark.parametrize("command", [["export"], ["train"], ["data", "synth"], ["infer"], ["bench"]])
def test_help_shows_flags_without_a_bool_type(command: list[str]) -> None:
    res = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    assert "<bool>" not in res.output, [ln for ln in res.output.splitlines() if "<bool>" in ln]
    assert "--help" in res.output and ("<int" in res.output or "<path>" in res.output)  # valued options keep a type


def test_help_as_a_user_types_it() -> None:
    proc = subprocess.run([sys.executable, "-m", "icpd.cli", "train", "--help"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "200"}, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "--train-encoders" in proc.stdout and "--freeze-encoders" in proc.stdout and "<bool>" not in proc.stdout


def test_zoom_draws_objects_larger(tmp_path: Path) -> None:
    from icpd.data import synthesize

    def foreground(zoom: float) -> float:
        root = synthesize(tmp_path / f"z{zoom}", "isaid5i", 10, seed=2, size=96, zoom=zoom).root
        labels = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
                  for p in sorted((root / "trn" / "semantic_png").glob("*.png"))]
        return float(np.mean([(lab > 0).mean() for lab in labels]))

    ratio = foreground(2.0) / foreground(1.0)
    assert 2.0 < ratio < 6.0, ratio  # lengths x2: areas ~x4 (less where objects leave the tile)
    with pytest.raises(ValueError, match="zoom"):
        synthesize(tmp_path / "bad", "isaid5i", 5, seed=0, zoom=0.0)
