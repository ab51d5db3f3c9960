"""Two exports into one --out (issue 20, section 1): the second is refused at once with one error line
naming the folder and the first run's pid (exit 2), instead of a FileExistsError traceback after a
whole export; the first finishes. A lock left by a killed export is taken over."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from icpd.artifacts.model_dir import ModelDir
from icpd.export.onnx import export_model
from icpd.io.locks import LockHeldError, exclusive_lock, lock_path

ICPD = [sys.executable, "-c", "from icpd.cli import main; main()"]


def _cli():
    exe = shutil.which("icpd")
    return [exe] if exe else ICPD


def test_second_concurrent_export_is_refused_at_once(tmp_path):
    """Guards issue 20 section 1: the second export failed with a FileExistsError traceback after a full export."""
    out = tmp_path / "model"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "300"}
    cmd = [*_cli(), "export", "--random-weights", "--preset", "tiny", "--out", str(out), "--no-validate", "-q"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not lock_path(out).exists():  # the first run holds --out
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first export never took its lock"
            time.sleep(0.05)
        holder = json.loads(lock_path(out).read_text())
        assert holder["pid"] == first.pid and holder["command"] == "icpd export"
        t0 = time.monotonic()
        second = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=120)
        took = time.monotonic() - t0
        still_running = first.poll() is None
        stdout, stderr = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
    assert lines[0].startswith(f"error: {out} is being written by another `icpd export` run (pid {first.pid} on ")
    assert f"If that run no longer exists, delete {out}.lock" in lines[0]
    assert still_running, "the second run was not refused before the first finished"
    assert took < 60  # start-up of a Python process with torch on a loaded CI machine; no export ran
    assert first.returncode == 0, stderr
    assert f"wrote {out} (fp32)" in " ".join(stdout.split())
    ModelDir.open(out, verify=True)
    assert not lock_path(out).exists() and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_library_export_is_refused_while_another_holds_the_folder(tiny_model, tmp_path):
    out = tmp_path / "model"
    with exclusive_lock(out, "export"), pytest.raises(LockHeldError, match=rf"pid {os.getpid()}"):
        export_model(tiny_model, out, validate=False)
    assert not out.exists()


def test_a_killed_exports_lock_is_taken_over(tmp_path):
    """A lock left by an export killed with SIGKILL (its process is gone): the next export goes ahead."""
    out = tmp_path / "model"
    script = ("import sys, time\nfrom icpd.io.locks import exclusive_lock\n"
              "with exclusive_lock(sys.argv[1], 'export'):\n    print('held', flush=True)\n    time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", script, str(out)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    assert json.loads(lock_path(out).read_text())["pid"] == holder.pid  # left behind
    from typer.testing import CliRunner

    from icpd.cli import app

    res = CliRunner().invoke(app, ["export", "--random-weights", "--preset", "tiny", "--out", str(out),
                                   "--no-validate", "-q"])
    assert res.exit_code == 0, res.output
    assert ModelDir.open(out).meta["preset"]["name"] == "tiny" and not lock_path(out).exists()
