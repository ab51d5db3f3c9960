"""What `icpd infer` shows on a terminal: conversion notes, the tile count of a long scene, and the
progress bars (scenes done / total, tiles per second, ETA), and a real Ctrl-C. Driven through the CLI with its
stderr console swapped for a terminal console that writes into a buffer."""

from __future__ import annotations

import io
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from icpd.cli import app
from icpd.commands import infer as infer_command
from tests.apps.infer.interrupt import icpd_command, signal_after
from tests.runtime.supports import make_supports

runner = CliRunner()


@pytest.fixture(scope="module")
def supports(tiny_model_dir, tmp_path_factory):
    return make_supports(tiny_model_dir, tmp_path_factory.mktemp("supports"))


def _terminal(monkeypatch) -> io.StringIO:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=160, color_system=None)
    monkeypatch.setattr(infer_command, "console", console)
    return buffer


def _scenes(folder: Path) -> list[Path]:
    rng = np.random.default_rng(3)
    folder.mkdir()
    gray, rgb = folder / "gray.png", folder / "rgb.png"
    cv2.imwrite(str(gray), rng.integers(0, 255, (140, 150), dtype=np.uint8))  # single channel: a conversion
    cv2.imwrite(str(rgb), rng.integers(0, 255, (300, 260, 3), dtype=np.uint8))
    return [gray, rgb]


def _infer(model_dir: Path, supports: list[Path], inputs: list[Path], out: Path, *extra: str):
    args = ["infer", "--model", str(model_dir), "--support", str(supports[0]), "--support", str(supports[1]),
            *map(str, inputs), "--out", str(out), "--threads", "1", *extra]
    return runner.invoke(app, args)


def test_conversion_notes_tile_count_and_progress_reach_the_terminal(tiny_model_dir, supports, tmp_path,
                                                                     monkeypatch):
    inputs = _scenes(tmp_path / "in")
    monkeypatch.setattr(infer_command, "LONG_SCENE_TILES", 6)  # rgb.png (300 x 260) has more tiles than this
    shown = _terminal(monkeypatch)
    res = _infer(tiny_model_dir, supports, inputs, tmp_path / "out", "--batch", "1")  # 9 tile updates: a rate
    assert res.exit_code == 0, res.output
    text = shown.getvalue()
    notes = re.findall(r"note: [^\x1b\n]*", text)  # on a terminal, bar redraws share their lines
    assert any(line.startswith("note: gray.png: ") and "grayscale" in line for line in notes), text
    assert any(line.startswith("note: rgb.png: 260x300 px -> ") and line.endswith(" tiles (see --tile)")
               for line in notes), text
    # under the threshold: no count
    assert not any(line.startswith("note: gray.png: 150x140") for line in notes)
    assert "scenes" in text and "2/2" in text and "tiles/s" in text and "ETA" in text, text


def test_repeated_notes_are_counted_and_resumed_scenes_summed_up(tiny_model_dir, supports, tmp_path,
                                                                 monkeypatch):
    """An archive of grayscale scenes: the note is shown for NOTE_REPEATS scenes, then counted; a
    rerun shows one line for the scenes it skipped, not their notes again."""
    scenes = tmp_path / "in"
    scenes.mkdir()
    rng = np.random.default_rng(4)
    for i in range(5):
        cv2.imwrite(str(scenes / f"g{i}.png"), rng.integers(0, 255, (100, 90), dtype=np.uint8))
    shown = _terminal(monkeypatch)
    assert _infer(tiny_model_dir, supports, [scenes], tmp_path / "out").exit_code == 0
    notes = re.findall(r"note: [^\x1b\n]*", shown.getvalue())
    each = [f"note: g{i}.png: grayscale: replicated to R, G, B" for i in range(infer_command.NOTE_REPEATS)]
    counted = "note: 2 more scene(s): grayscale: replicated to R, G, B (each scene's notes: summary.json)"
    assert notes == [*each, counted], notes
    shown = _terminal(monkeypatch)
    assert _infer(tiny_model_dir, supports, [scenes], tmp_path / "out").exit_code == 0
    notes = re.findall(r"note: [^\x1b\n]*", shown.getvalue())
    assert notes == ["note: 5 scene(s) complete in earlier runs (outputs checked by sha256): not redone"], \
        notes


def test_quiet_shows_no_notes_and_no_bars(tiny_model_dir, supports, tmp_path, monkeypatch):
    inputs = _scenes(tmp_path / "in")
    monkeypatch.setattr(infer_command, "LONG_SCENE_TILES", 1)
    shown = _terminal(monkeypatch)
    res = _infer(tiny_model_dir, supports, inputs, tmp_path / "out", "-q")
    assert res.exit_code == 0, res.output
    text = shown.getvalue()
    assert "note:" not in text and "tiles/s" not in text
    # the result line still prints (stdout, like every command's)
    assert "2 of 2 scene(s) segmented" in res.stdout


def test_sigint_stops_infer_with_a_summary_and_the_rerun_goes_on(tiny_model_dir, supports, tmp_path):
    """Ctrl-C (a real SIGINT to the console script) after the first scenes: exit 130, one line
    saying how to go on, summary.json "interrupted": true with the scenes done, no temporaries;
    the same command again does the rest and skips what was complete."""
    import json
    import signal
    import subprocess

    rng = np.random.default_rng(5)
    scenes = tmp_path / "in"
    scenes.mkdir()
    for i in range(16):
        cv2.imwrite(str(scenes / f"s{i:02d}.png"), rng.integers(0, 255, (448, 448, 3), dtype=np.uint8))
    out = tmp_path / "out"
    args = icpd_command("infer", str(scenes), "--model", str(tiny_model_dir), "--support", str(supports[0]),
                        "--support", str(supports[1]), "--out", str(out), "--threads", "1", "--batch", "1")
    returncode, err = signal_after(args, out, 2, signal.SIGINT)  # two scenes are complete
    assert returncode == 130, err
    assert "Traceback" not in err and "interrupted: " in err and "run the same command again" in err, err
    doc = json.loads((out / "summary.json").read_text())
    done = [r for r in doc["inputs"] if r["status"] == "ok"]
    assert doc["interrupted"] is True and 2 <= len(done) < 16, doc["inputs"]
    assert not [p.name for p in out.rglob("*") if p.name.startswith(".")]  # no temporary files left

    again = subprocess.run([*args, "-q"], capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    doc = json.loads((out / "summary.json").read_text())
    assert doc["interrupted"] is False and doc["ok"] == 16
    skipped = {Path(r["path"]).name for r in doc["inputs"] if any("not redone" in n for n in r["notes"])}
    assert {Path(r["path"]).name for r in done} <= skipped
