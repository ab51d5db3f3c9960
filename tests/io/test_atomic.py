"""atomic_dir / scratch_dir / remove_stale: folders appear complete or not at all, and the
leftovers of killed runs are cleaned up without touching a run in progress."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from icpd.io.atomic import atomic_dir, remove_stale, scratch_dir, temp_name, write_text_atomic


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_atomic_dir_appears_only_at_the_end(tmp_path):
    out = tmp_path / "model"
    with atomic_dir(out) as work:
        (work / "a.onnx").write_text("a")
        assert not out.exists() and work.parent == tmp_path and work.name.startswith(".model.")
    assert _names(out) == ["a.onnx"] and _names(tmp_path) == ["model"]


def test_atomic_dir_failure_leaves_nothing_and_keeps_the_old_folder(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "old").write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_dir(out, replace=True) as work:
        (work / "new").write_text("half")
        raise KeyboardInterrupt
    assert _names(tmp_path) == ["model"] and _names(out) == ["old"]


def test_atomic_dir_replace_swaps_the_whole_folder(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "old").write_text("old")
    with atomic_dir(out, replace=True) as work:
        (work / "new").write_text("new")
    assert _names(out) == ["new"] and _names(tmp_path) == ["model"]  # the old folder renamed aside is gone


def test_atomic_dir_refuses_a_non_empty_folder_before_the_body(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep").write_text("x")
    ran = []
    with pytest.raises(FileExistsError, match="not empty"), atomic_dir(out):
        ran.append(1)
    assert not ran and _names(tmp_path) == ["model"]
    (out / "keep").unlink()
    with atomic_dir(out) as work:  # an empty folder may be filled
        (work / "f").write_text("x")
    assert _names(out) == ["f"]


def test_atomic_dir_gets_umask_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_dir(tmp_path / "m") as work:
            write_text_atomic(work / "model.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m").stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "m" / "model.json").stat().st_mode) == 0o640


def _killed_run_leftover(target: Path, opener: str = "atomic_dir(Path(sys.argv[1]))") -> Path:
    """The temporary folder a run killed with SIGKILL leaves behind (named with its dead pid)."""
    code = ("import os, sys; from pathlib import Path; from icpd.io.atomic import atomic_dir, scratch_dir\n"
            f"with {opener} as w:\n"
            "    (w / 'half').write_text('x'); print(w, flush=True); os.kill(os.getpid(), 9)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(target)], check=False, capture_output=True, text=True)
    assert proc.returncode == -9
    leftover = Path(proc.stdout.strip())
    assert leftover.is_dir()
    return leftover


def test_leftovers_of_killed_runs_are_removed_on_the_next_run(tmp_path):
    out = tmp_path / "model"
    leftover = _killed_run_leftover(out)
    other = tmp_path / ".other.123-abcdef.0011aabb"  # another target's folder: not ours to remove
    other.mkdir()
    with atomic_dir(out) as work:
        (work / "f").write_text("x")
    assert not leftover.exists() and other.exists()
    assert _names(tmp_path) == [".other.123-abcdef.0011aabb", "model"]


def test_scratch_leftovers_of_killed_runs_are_removed_too(tmp_path):
    out = tmp_path / "m16"
    leftover = _killed_run_leftover(out, 'scratch_dir(Path(sys.argv[1]), "fp32")')
    assert leftover.name.startswith(".m16.fp32-")
    with scratch_dir(out, "fp32"):
        assert not leftover.exists()


def test_a_live_runs_folder_is_kept(tmp_path):
    out = tmp_path / "model"
    live = tmp_path / temp_name(out)  # this process is alive
    live.mkdir()
    assert remove_stale(out) == [] and live.is_dir()


def test_scratch_dir_is_removed_either_way(tmp_path):
    near = tmp_path / "m16"
    with scratch_dir(near, "fp32") as work:
        assert work.parent == tmp_path and work.name.startswith(".m16.fp32-")
        (work / "x").write_text("x")
    with pytest.raises(RuntimeError), scratch_dir(near) as work:
        raise RuntimeError
    assert _names(tmp_path) == []
