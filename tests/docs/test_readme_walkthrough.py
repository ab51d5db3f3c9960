"""The README's "A first hour" commands run as written (issue 20): the bash block is taken from the
README and run by bash, in a fresh folder, as a user pastes it. Only training is shortened (its
epoch and episode counts: the recipe's 30 epochs take ~8 minutes); every other argument, file name
and command is the README's own, so a renamed option, a tile the synthetic set no longer makes or
a command that fails breaks this test."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image  # label PNGs are palette PNGs: Pillow reads the class ids

README = Path(__file__).resolve().parents[2] / "README.md"

# The recipe's numbers -> a short run; each must be present (the test fails when the README changes them).
SHORTEN = {"--epochs 30": "--epochs 1", "--episodes-per-epoch 256": "--episodes-per-epoch 4",
           "--val-episodes 60": "--val-episodes 2"}


def walkthrough_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## A first hour"):]
    match = re.search(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert match, "README: no ```bash block in 'A first hour'"
    return match.group(1)


def test_the_block_names_what_the_test_shortens():
    block = walkthrough_block()
    for original in SHORTEN:
        assert original in block, f"README's first-hour recipe no longer has {original!r}"


@pytest.mark.slow
def test_readme_first_hour_runs_as_written(tmp_path):
    script = walkthrough_block()
    for original, short in SHORTEN.items():
        script = script.replace(original, short)
    bindir = Path(sys.executable).parent  # the `icpd` console script of this interpreter
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], check=False, cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr
    root = tmp_path / "first-hour"
    for name in ("model/model.json", "eval.json", "basketball_court.support", "storage_tank.support",
                 "results/summary.json"):
        assert (root / name).is_file(), f"the walkthrough did not write first-hour/{name}"
    summary = json.loads((root / "results" / "summary.json").read_text())
    scenes = re.findall(r"\{([^}]*)\}\.png", script)[0].split(",")
    for stem in scenes:
        labels = np.asarray(Image.open(root / "results" / f"{stem}_labels.png"))
        assert labels is not None and labels.shape == (128, 128), stem
        assert int(labels.max()) <= 2  # background + the two classes the README caches
    assert json.dumps(summary)  # a complete JSON document
