"""`icpd stream` when its outputs fail (issue 20, section 1): it never hangs, a user's disk gives one
`error:` line (exit 2) and no traceback, an internal error keeps its traceback (exit 1), the
video is finalised or removed (never left unplayable) and the JSONL holds only whole lines.

The faults are real where no privilege is needed, and CI runs as root, which a chmod does not
stop: folders that even root cannot write (/sys, /proc, a path through a file) and a file size
limit (RLIMIT_FSIZE with SIGXFSZ ignored, set in the child) for a write that fails midway. A
read-only and a nearly full tmpfs are used where `mount` works (root with CAP_SYS_ADMIN), and
skipped with the reason elsewhere. A fake output sink (a subclass of the real one, swapped in by
the test) fails at a chosen frame to test the pipeline's stages stopping together.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from icpd.apps.stream import pipeline as stream_module
from icpd.apps.stream.outputs import StreamOutputs, reserve_bytes, stream_paths
from icpd.apps.stream.pipeline import FrameQueue, StreamOptions, run_stream
from icpd.apps.stream.video import Frame, FrameSource, container_problem, open_frames
from icpd.cli import app
from icpd.data.synthetic import render_tile
from icpd.io import OutputPathError
from icpd.runtime.predictor import Predictor
from tests.runtime.supports import make_supports

runner = CliRunner()
S = 128  # tiny preset input size
# Runs `icpd` with a file size limit: SIGXFSZ ignored, so a write past it fails with EFBIG (as a
# full disk fails with ENOSPC) instead of killing the process; both survive the exec.
LIMITED = ("import os, resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
           "resource.setrlimit(resource.RLIMIT_FSIZE, "
           "(int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_FSIZE)[1])); "
           "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])")


@pytest.fixture(scope="module")
def model(tmp_path_factory, tiny_model_dir) -> tuple[Path, Path]:
    """(model dir, one support cache) of the session's tiny model."""
    return tiny_model_dir, make_supports(tiny_model_dir, tmp_path_factory.mktemp("faults"))[0]


@pytest.fixture(scope="module")
def predictor(model) -> Predictor:
    p = Predictor.load(model[0], backend="ort", threads=1)
    p.add_support(model[1])
    return p


def _video(path: Path, frames: int) -> Path:
    """``frames`` synthetic 128 px tiles as a lossless video."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 10.0, (S, S))
    for i in range(frames):
        tile, _ = render_tile(np.random.default_rng(100 + i), S, "isaid5i", [1], [2])
        writer.write(np.ascontiguousarray(tile[:, :, ::-1]))
    writer.release()
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return _video(tmp_path_factory.mktemp("clip") / "clip.avi", 12)


def _stream(model: tuple[Path, Path], source: Path, out: Path | str, timeout: float,
            limit: int | None = None) -> tuple[int, str, str, float]:
    """`icpd stream SOURCE --out OUT` as a real process (optionally under a file size limit):
    (exit code, stdout, stderr, seconds). A run past ``timeout`` is killed and fails the test."""
    args = ["-m", "icpd.cli", "stream", str(source), "--model", str(model[0]), "--support", str(model[1]),
            "--out", str(out), "--threads", "1", "-q"]
    cmd = [sys.executable, "-c", LIMITED, str(limit), *args] if limit is not None else [sys.executable, *args]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ | {"OMP_NUM_THREADS": "1"})
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(f"icpd stream still running after {timeout} s (hangs); stderr:\n{stderr}")
    return proc.returncode, stdout, stderr, time.monotonic() - t0


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def _whole_lines(path: Path) -> list[dict]:
    """Every line of a JSONL file, each parsed (fails on a half line); the file ends with a newline."""
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), repr(text[-80:])
    return [json.loads(line) for line in text.splitlines()]


def _decoded_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


@contextlib.contextmanager
def _tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``where`` for the test; skipped where mounting is not allowed."""
    where.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no `mount` command here")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=False,
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _icpd_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("icpd-")]


# -- an --out that cannot be written: refused before the first frame, at once ------------------------------

@pytest.mark.parametrize("where", ["sys", "proc", "through-a-file", "read-only-mount"])
def test_unwritable_out_is_one_error_line_within_5_s(model, clip, tmp_path, where):
    """Guards issue 20: an --out on a read-only file system printed the output thread's traceback
    and never exited. Now the outputs are checked before the model loads: exit 2 within 5 s, one
    `error:` line naming the folder and the fix, nothing written. Folders root cannot write either."""
    mount: contextlib.AbstractContextManager = contextlib.nullcontext()
    if where == "sys":
        if not Path("/sys/kernel").is_dir():
            pytest.skip("no sysfs at /sys here")
        out, folder = Path("/sys/seg.mp4"), "/sys"
    elif where == "proc":
        out, folder = Path("/proc/seg.mp4"), "/proc"
    elif where == "through-a-file":
        (tmp_path / "file").write_text("a file, not a folder")
        out, folder = tmp_path / "file" / "sub" / "seg.mp4", str(tmp_path / "file")
    else:
        mount = _tmpfs(tmp_path / "ro", "size=1m,ro")
        out, folder = tmp_path / "ro" / "seg.mp4", str(tmp_path / "ro")
    fix = {"sys": "permissions", "proc": "check the path", "through-a-file": "a part of the path is a file",
           "read-only-mount": "Read-only file system; that file system is read-only; choose an output "
                              "location on a writable one"}[where]
    with mount:
        code, stdout, stderr, seconds = _stream(model, clip, out, timeout=30)
        line = _one_error_line(stderr)
        assert code == 2 and stdout == "", (code, stdout)
        assert line.startswith(f"error: {folder}: ") and fix in line, line
        assert seconds < 5.0, f"took {seconds:.1f} s"
        for path in stream_paths(out).values():
            assert not path.exists()


def test_an_existing_folder_named_like_an_output_is_refused_before_any_write(model, clip, tmp_path):
    """A folder where the JSONL (or the video) would go: one line naming it, exit 2, nothing written."""
    (tmp_path / "seg.jsonl").mkdir()
    res = runner.invoke(app, ["stream", str(clip), "--model", str(model[0]), "--support", str(model[1]),
                              "--out", str(tmp_path / "seg.mp4")])
    assert res.exit_code == 2, res.output
    assert f"error: {tmp_path / 'seg.jsonl'}: Is a directory; it is a folder; name a file" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg.jsonl"]


# -- a write that fails midway: a full disk, a file size limit ---------------------------------------------

@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_a_video_cut_by_a_write_error_is_removed_and_said_so(model, clip, tmp_path, suffix):
    """Guards issue 20: a video whose writes failed (OpenCV reports none) was left without its index
    ("moov atom not found") and the run exited 0. Under a 16 KiB file size limit the 12-frame
    video cannot be whole: it is removed, one error line says so and why (exit 2), and the JSONL
    and summary (small, within the limit) keep all 12 frames, each line whole."""
    out = tmp_path / f"seg{suffix}"
    code, _, stderr, _ = _stream(model, clip, out, timeout=180, limit=16 * 1024)
    line = _one_error_line(stderr)
    assert code == 2, (code, stderr)
    assert line.startswith(f"error: {out}: the video could not be finalised ("), line
    assert "the file size limit (ulimit -f) of 16384 bytes was reached), so it was removed" in line
    assert f"(12 frame(s) written, {stream_paths(out)['jsonl']} and seg.summary.json hold them)" in line
    assert not out.exists()
    assert [r["frame"] for r in _whole_lines(stream_paths(out)["jsonl"])] == list(range(12))
    doc = json.loads(stream_paths(out)["summary"].read_text())
    assert doc["frames_out"] == 12 and doc["outputs"]["video"] is None
    assert doc["end_reason"].startswith("error: OutputPathError: ") and not doc["interrupted"]


def test_a_jsonl_line_cut_by_a_write_error_is_taken_back(tmp_path):
    """A line that does not fit (a 1000-byte file size limit here; a full disk alike) is cut back
    off: the file ends with the last whole line, and the error names the file and the reason."""
    path = tmp_path / "run.jsonl"
    code = ("from pathlib import Path; from icpd.apps.stream.outputs import JsonlWriter\n"
            f"w = JsonlWriter(Path({str(path)!r}))\n"
            "try:\n"
            "    for i in range(100): w.write({'frame': i, 'pixels': {'ship': 12345 * i}})\n"
            "except OSError as e: print(w.lines, e.errno, e)\n")
    done = subprocess.run([sys.executable, "-c", LIMITED, "1000", "-c", code], check=False,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines, err_no, message = done.stdout.strip().split(" ", 2)
    assert int(err_no) == errno.EFBIG
    assert message == f"{path}: File too large; check the path and its permissions"
    records = _whole_lines(path)
    assert len(records) == int(lines) > 0 and [r["frame"] for r in records] == list(range(len(records)))
    assert path.stat().st_size < 1000


def test_a_nearly_full_disk_stops_the_run_with_a_playable_video(model, tmp_path):
    """A disk that fills up during the run: before each frame the free space is checked, and below
    the reserve the run stops while the video can still be finalised. Exit 2 with one line, and
    the video, the JSONL and the summary agree on the frames written (a tmpfs of 8 MiB, filled
    to leave the reserve + 160 KiB)."""
    source = _video(tmp_path / "long.avi", 150)
    with _tmpfs(tmp_path / "disk", "size=8m") as disk:
        filler = disk / "filler"
        filler.write_bytes(b"\0" * (shutil.disk_usage(disk).free - reserve_bytes(0) - 160 * 1024))
        out = disk / "seg.mp4"
        code, _, stderr, _ = _stream(model, source, out, timeout=180)
        line = _one_error_line(stderr)
        assert code == 2, (code, stderr)
        assert line.startswith(f"error: {disk}: only "), line
        assert line.endswith("; the disk is full; free some space or choose an output location on another "
                             "disk")
        n = len(_whole_lines(stream_paths(out)["jsonl"]))
        assert 0 < n < 150
        jsonl = stream_paths(out)["jsonl"]
        assert f"({n} frame(s) written, {jsonl} and seg.summary.json hold them; {out} is finalised)" in line
        assert container_problem(out) is None and _decoded_frames(out) == n
        assert json.loads(stream_paths(out)["summary"].read_text())["frames_out"] == n

        for path in stream_paths(out).values():
            path.unlink()
        room = shutil.disk_usage(disk).free + filler.stat().st_size - reserve_bytes(0) // 2
        filler.write_bytes(b"\0" * room)
        code, _, stderr, _ = _stream(model, source, out, timeout=30)
        assert code == 2 and _one_error_line(stderr).startswith(f"error: {disk}: only "), stderr
        assert sorted(p.name for p in disk.iterdir()) == ["filler"], "refused before anything was written"


# -- a stage that fails: every stage stops, every thread joins ---------------------------------------------

class FailingOutputs(StreamOutputs):
    """The real outputs, whose write fails at frame ``fail_at`` with ``error`` (a fault injected by the
    test)."""

    fail_at = 2
    error: BaseException = RuntimeError("encoder exploded")

    def write(self, rgb, record):
        if self.frames == self.fail_at:
            raise self.error
        super().write(rgb, record)


@pytest.mark.parametrize("kind", ["disk", "internal"])
def test_an_output_failure_stops_every_stage_promptly(model, predictor, tmp_path, monkeypatch, kind):
    """The output stage fails at frame 2 of 120: inference and capture stop (no stage waits on a
    queue whose other end is gone), every thread is joined, the two frames written stay in a
    playable video, the JSONL and the summary. In the CLI, a user's disk is one line (exit 2); an
    internal error keeps its traceback (exit 1)."""
    source = _video(tmp_path / "long.avi", 120)
    jsonl = stream_paths(tmp_path / "api.mp4")["jsonl"]
    error = (OutputPathError(errno.ENOSPC, "No space left on device", str(jsonl)) if kind == "disk"
             else RuntimeError("encoder exploded"))
    monkeypatch.setattr(FailingOutputs, "error", error)
    monkeypatch.setattr(stream_module, "StreamOutputs", FailingOutputs)

    t0 = time.monotonic()
    with open_frames(source) as src, pytest.raises(type(error)) as raised:
        run_stream(predictor, src, StreamOptions(), tmp_path / "api.mp4")
    assert time.monotonic() - t0 < 5.0
    assert _icpd_threads() == []
    doc = json.loads(stream_paths(tmp_path / "api.mp4")["summary"].read_text())
    assert doc["frames_out"] == 2 and doc["frames_in"] < 30, doc
    assert len(_whole_lines(jsonl)) == 2 == _decoded_frames(tmp_path / "api.mp4")
    if kind == "disk":
        assert str(raised.value) == (f"{jsonl}: No space left on device (2 frame(s) written, {jsonl} and "
                                     f"api.summary.json hold them; {tmp_path / 'api.mp4'} is finalised); the "
                                     "disk is full; free some space or choose an output location on another "
                                     "disk")

    out = tmp_path / "cli.mp4"
    if kind == "disk":
        monkeypatch.setattr(FailingOutputs, "error", OutputPathError(errno.ENOSPC, "No space left on device",
                                                                     str(stream_paths(out)["jsonl"])))
    res = runner.invoke(app, ["stream", str(source), "--model", str(model[0]), "--support", str(model[1]),
                              "--out", str(out), "--threads", "1", "-q"])
    assert _icpd_threads() == []
    if kind == "disk":
        assert res.exit_code == 2 and "Traceback" not in res.output, res.output
        assert [ln for ln in res.output.splitlines() if ln.strip()] == [
            (f"error: {stream_paths(out)['jsonl']}: No space left on device (2 frame(s) written, "
             f"{stream_paths(out)['jsonl']} and cli.summary.json hold them; {out} is finalised); the disk is "
             "full; free some space or choose an output location on another disk")]
    else:
        assert res.exit_code == 1 and isinstance(res.exception, RuntimeError), res.output
    assert len(_whole_lines(stream_paths(out)["jsonl"])) == 2 == _decoded_frames(out)


class BrokenCamera(FrameSource):
    """A source whose read raises at frame ``fail_at`` (a driver error, not an end of stream)."""

    description, fps = "broken camera", 10.0

    def __init__(self, fail_at: int) -> None:
        self.fail_at, self.next = fail_at, 0

    def read(self) -> Frame | None:
        if self.next == self.fail_at:
            raise RuntimeError("camera unplugged")
        tile, _ = render_tile(np.random.default_rng(self.next), S, "isaid5i", [1], [])
        self.next += 1
        return Frame(self.next - 1, self.next / 10, time.perf_counter(), tile)


def test_a_capture_failure_is_raised_after_the_frames_before_it(predictor, tmp_path):
    """The capture stage fails at frame 3: the three frames before it are processed and written,
    the error is raised in the caller's thread (its traceback kept), every thread is joined."""
    out = tmp_path / "seg.avi"
    with pytest.raises(RuntimeError, match="camera unplugged"):
        run_stream(predictor, BrokenCamera(3), StreamOptions(), out)
    assert _icpd_threads() == []
    doc = json.loads(stream_paths(out)["summary"].read_text())
    assert doc["end_reason"] == "capture error: RuntimeError: camera unplugged" and doc["frames_out"] == 3
    assert len(_whole_lines(stream_paths(out)["jsonl"])) == 3 == _decoded_frames(out)


def test_a_consumer_waiting_on_an_empty_queue_gives_up_when_told():
    """The inference stage waits for frames with a give-up test: if the stage feeding it failed
    without closing the queue, the wait ends instead of hanging."""
    q = FrameQueue(2)
    failed = threading.Event()
    threading.Timer(0.2, failed.set).start()
    t0 = time.monotonic()
    assert q.get(failed.is_set) is None
    assert 0.15 < time.monotonic() - t0 < 2.0
    q.put("frame", lambda: False)
    assert q.get(failed.is_set) == "frame", "an item already queued is still handed out"


def test_container_check_tells_a_whole_video_from_a_cut_one(tmp_path):
    """The check behind the removal: whole MP4/AVI files pass; the same files cut short (a failed
    write) or without the MP4 index do not, with the reason."""
    for suffix, fourcc in ((".mp4", "mp4v"), (".avi", "MJPG")):
        path = tmp_path / f"v{suffix}"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10.0, (S, S))
        for i in range(5):
            writer.write(np.full((S, S, 3), 40 * i, np.uint8))
        writer.release()
        assert container_problem(path) is None
        data = path.read_bytes()
        cut = tmp_path / f"cut{suffix}"
        cut.write_bytes(data[: len(data) - 100])
        assert "cut short" in container_problem(cut) or container_problem(cut) == "no moov index"
    mp4 = (tmp_path / "v.mp4").read_bytes()
    moov = mp4.index(b"moov") - 4
    (tmp_path / "no_index.mp4").write_bytes(mp4[:moov])
    assert container_problem(tmp_path / "no_index.mp4") == "no moov index"
