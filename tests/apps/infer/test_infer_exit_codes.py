"""Issue 20 §3: `icpd infer` holds the exit codes the README's table defines: 0 every scene
segmented, 1 the run finished but some scenes failed, 2 a user error (nothing run), 130 Ctrl-C,
143 SIGTERM; its result line goes to stdout, like every command's (errors and notes to stderr)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from icpd.cli import app
from tests.apps.infer.interrupt import icpd_command, signal_after
from tests.runtime.supports import make_supports

runner = CliRunner()


@pytest.fixture(scope="module")
def supports(tiny_model_dir, tmp_path_factory):
    return make_supports(tiny_model_dir, tmp_path_factory.mktemp("supports"))


def _args(model_dir: Path, supports: list[Path], inputs: list[Path], out: Path) -> list[str]:
    return ["infer", "--model", str(model_dir), "--support", str(supports[0]), "--support", str(supports[1]),
            *map(str, inputs), "--out", str(out), "--threads", "1", "-q"]


def test_exit_0_1_2_and_the_result_line_on_stdout(tiny_model_dir, supports, tmp_path):
    good = tmp_path / "in" / "good.png"
    good.parent.mkdir()
    cv2.imwrite(str(good), np.random.default_rng(0).integers(0, 255, (100, 120, 3), dtype=np.uint8))

    ok = runner.invoke(app, _args(tiny_model_dir, supports, [good], tmp_path / "ok"))
    assert ok.exit_code == 0, ok.output
    assert ok.stdout == f"1 of 1 scene(s) segmented; wrote {tmp_path / 'ok' / 'summary.json'}\n"
    assert "segmented" not in ok.stderr

    broken = tmp_path / "in" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    some = runner.invoke(app, _args(tiny_model_dir, supports, [good, broken], tmp_path / "some"))
    assert some.exit_code == 1, some.output  # finished, one scene failed
    assert some.stdout == f"1 of 2 scene(s) segmented; wrote {tmp_path / 'some' / 'summary.json'}\n"
    assert some.stderr.startswith("error: ") and "broken.png" in some.stderr
    assert json.loads((tmp_path / "some" / "summary.json").read_text())["failed"] == 1

    user = runner.invoke(app, _args(tiny_model_dir, [tmp_path / "none.support", supports[1]], [good],
                                    tmp_path / "user"))
    assert user.exit_code == 2 and user.stdout == ""  # a user error: one line, nothing run
    assert user.stderr.startswith("error: ") and "none.support" in user.stderr
    assert not (tmp_path / "user").exists()


def test_sigterm_stops_infer_with_143(tiny_model_dir, supports, tmp_path):
    """SIGTERM (a scheduler, `kill`) after the first scene: exit 143, the summary marked interrupted."""
    scenes = tmp_path / "in"
    scenes.mkdir()
    rng = np.random.default_rng(5)
    for i in range(12):
        cv2.imwrite(str(scenes / f"s{i:02d}.png"), rng.integers(0, 255, (384, 384, 3), dtype=np.uint8))
    out = tmp_path / "out"
    argv = icpd_command(*_args(tiny_model_dir, supports, [scenes], out), "--batch", "1")
    returncode, err = signal_after(argv, out, 1, signal.SIGTERM)  # after the first scene
    assert returncode == 143, err
    assert "Traceback" not in err and "interrupted: " in err, err
    assert json.loads((out / "summary.json").read_text())["interrupted"] is True
