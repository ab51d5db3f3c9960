"""A torchvision built for another torch (issue 20): `icpd info`, `icpd bench` and any command that
imports torchvision say in one line what to install, instead of a 50-line traceback.

The mismatch is made real in a subprocess: a `torchvision` package earlier on PYTHONPATH whose
import raises what a mismatched wheel raises, with a dist-info saying it is 0.24.0."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from icpd.commands.torch_check import check_torchvision, exit_if_mismatch, is_mismatch, matching_torchvision

pytest.importorskip("torchvision", reason="the torch extra is not installed")

MISMATCH = "operator torchvision::nms does not exist"


@pytest.fixture(scope="module")
def broken_env(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("fake-torchvision")
    (root / "torchvision").mkdir()
    (root / "torchvision" / "__init__.py").write_text(f"raise RuntimeError({MISMATCH!r})\n")
    meta = root / "torchvision-0.24.0.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: torchvision\nVersion: 0.24.0\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
            "COLUMNS": "200"}


def _icpd(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("icpd")
    cmd = [exe] if exe else [sys.executable, "-c", "from icpd.cli import main; main()"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=300, check=False)


def _expected_fix() -> tuple[str, str]:
    release = importlib.metadata.version("torch").partition("+")[0]
    want = matching_torchvision(release)
    return (f"pip install 'torchvision=={want}'",
            f"pip install 'torch=={release}' 'torchvision=={want}' --index-url https://download.pytorch.org/whl/cpu")


def _assert_one_line(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    line = errors[0]
    assert line.startswith(f"error: torchvision 0.24.0 does not fit torch {importlib.metadata.version('torch')} "
                           f"(importing it failed: {MISMATCH})"), line
    same_index, cpu = _expected_fix()
    assert same_index in line and cpu in line, line


def test_matching_torchvision() -> None:
    assert matching_torchvision("2.14.1") == "0.29.1"
    assert matching_torchvision("2.5.1") == "0.20.1"
    assert matching_torchvision("2.0.0") == "0.15.0"
    assert matching_torchvision("2.9.1+cpu") == "0.24.1"
    assert matching_torchvision("1.13.1") is None


def test_installed_pair_fits_and_other_runtime_errors_keep_their_traceback() -> None:
    assert check_torchvision() is None  # this environment's own pair
    assert is_mismatch(RuntimeError(MISMATCH)) and not is_mismatch(RuntimeError("CUDA out of memory"))
    with pytest.raises(RuntimeError, match="boom"):
        exit_if_mismatch(RuntimeError("boom"))


def test_info_names_the_torchvision_to_install(broken_env: dict[str, str]) -> None:
    proc = _icpd("info", env=broken_env)
    _assert_one_line(proc)
    assert "0.24.0: does not fit this torch" in proc.stdout  # the tables are still printed


def test_bench_says_it_before_any_work(broken_env: dict[str, str], tmp_path: Path) -> None:
    proc = _icpd("bench", "--quick", "--cache-dir", str(tmp_path / "cache"), env=broken_env)
    _assert_one_line(proc)
    assert "[1/" not in proc.stderr and not (tmp_path / "cache").exists()  # nothing started, nothing written


def test_any_command_importing_torchvision_gives_the_same_line(broken_env: dict[str, str], tmp_path: Path) -> None:
    proc = _icpd("export", "--preset", "tiny", "--out", str(tmp_path / "m"), env=broken_env)
    _assert_one_line(proc)


def test_bench_of_a_model_dir_on_onnx_runtime_needs_no_torchvision(broken_env: dict[str, str], tiny_model_dir) -> None:
    """Timing an exported dir on ONNX Runtime imports neither torch nor torchvision (its memory
    figures stay those of the runtime), so a broken torchvision does not stop it."""
    proc = _icpd("bench", "--model", str(tiny_model_dir), "--backends", "ort", "--shots", "1", "--batch", "1",
                 "--classes", "1", "--rounds", "2", "-q", env=broken_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "wall time" in proc.stdout and "error:" not in proc.stderr
