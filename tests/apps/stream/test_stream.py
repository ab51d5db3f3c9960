"""`icpd stream`: frame-by-frame equality with `icpd infer`, bounded latency with --realtime,
a clean Ctrl-C (real subprocess), refused sources.

The tiny model is the session's (conftest ``tiny_model_dir``); the videos are synthetic tiles written with
OpenCV (FFV1: lossless, so a decoded frame is the pixels written; the comparison with `icpd
infer` still runs on the frames as decoded from the video, dumped to PNG).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image  # label PNGs are palette PNGs: Pillow reads the class ids
from typer.testing import CliRunner

from icpd.apps.stream.pipeline import FrameQueue, FrameResult, StreamOptions, run_stream, stream_paths
from icpd.apps.stream.video import open_frames
from icpd.cli import app
from icpd.data.synthetic import render_tile
from icpd.runtime.predictor import Predictor

runner = CliRunner()
S = 128  # tiny preset input size


@pytest.fixture(scope="module")
def model(tmp_path_factory, tiny_model_dir):
    """(model dir, [support cache paths]): the session's tiny model (conftest), two classes."""
    d = tmp_path_factory.mktemp("stream")
    p = Predictor.load(tiny_model_dir, backend="ort", threads=1)
    emb = np.random.default_rng(1).standard_normal((15, 32)).astype(np.float32)
    supports = []
    for k, (name, cid) in enumerate((("ship", 1), ("storage tank", 2))):
        img, lab = render_tile(np.random.default_rng(10 + k), S, "isaid5i", [cid], [])
        s = p.encode_support([img], [(lab == cid).astype(np.uint8)], name, np.roll(emb, k, 0))
        supports.append(s.save(d / f"{name.replace(' ', '_')}.support"))
    return tiny_model_dir, supports


@pytest.fixture(scope="module")
def predictor(model):
    model_dir, supports = model
    p = Predictor.load(model_dir, backend="ort", threads=1)
    for path in supports:
        p.add_support(path)
    return p


def _write_video(path: Path, frames: int, height: int, width: int, fps: float = 10.0,
                 fourcc: str = "FFV1") -> Path:
    """``frames`` synthetic aerial tiles (RGB), each a different scene, as a video."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened()
    for i in range(frames):
        tile, _ = render_tile(np.random.default_rng(100 + i), max(height, width), "isaid5i", [1 + i % 3], [2])
        writer.write(np.ascontiguousarray(tile[:height, :width, ::-1]))  # RGB -> BGR
    writer.release()
    return path


def _decode(path: Path) -> list[np.ndarray]:
    """Every frame of a video as (H, W, 3) uint8 RGB."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(bgr[:, :, ::-1].copy())
    cap.release()
    return frames


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("kind", ["video", "folder"])
def test_every_frame_equals_icpd_infer_on_that_frame(model, predictor, tmp_path, kind):
    """Guards the issue's contract: a streamed frame goes through exactly `icpd infer`'s path
    (tiling + blending: 144x200 frames are larger than the 128 px tile). Labels must be equal
    pixel for pixel; JSONL pixel counts, the overlay video's frame count and the summary agree."""
    model_dir, supports = model
    video = _write_video(tmp_path / "flight.avi", 5, 144, 200)
    decoded = tmp_path / "decoded"
    decoded.mkdir()
    for i, rgb in enumerate(_decode(video)):
        cv2.imwrite(str(decoded / f"frame_{i:03d}.png"), rgb[:, :, ::-1])
    res = runner.invoke(app, ["infer", "--model", str(model_dir), "--support", str(supports[0]), "--support",
                              str(supports[1]), str(decoded), "--out", str(tmp_path / "infer"), "-q",
                              "--threads", "1"])
    assert res.exit_code == 0, res.output
    expected = [np.asarray(Image.open(tmp_path / "infer" / f"frame_{i:03d}_labels.png")) for i in range(5)]
    assert any((e > 0).any() for e in expected), "a test whose frames are all background could not fail"

    got: list[FrameResult] = []
    out = tmp_path / "run" / "seg.mp4"
    with open_frames(video if kind == "video" else decoded) as src:
        summary = run_stream(predictor, src, StreamOptions(), out, on_result=got.append)
    assert [r.frame.index for r in got] == [0, 1, 2, 3, 4]
    for r, e in zip(got, expected):
        np.testing.assert_array_equal(r.labels, e)
    lines = _jsonl(stream_paths(out)["jsonl"])
    assert [ln["frame"] for ln in lines] == [0, 1, 2, 3, 4]
    for ln, e in zip(lines, expected):
        assert ln["pixels"] == {"ship": int((e == 1).sum()), "storage tank": int((e == 2).sum())}
        assert ln["size"] == [144, 200] and ln["latency_ms"] > 0
    assert [ln["timestamp_s"] for ln in lines] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert len(_decode(out)) == 5
    doc = json.loads(stream_paths(out)["summary"].read_text())
    assert doc["frames_in"] == doc["frames_out"] == 5 and doc["dropped"] == 0 and not doc["interrupted"]
    assert doc["end_reason"].startswith("end of source") and doc["latency_ms"]["p50"] > 0
    assert summary.frames_out == 5 and summary.fps > 0


def test_cli_every_n_processes_one_frame_in_n(model, tmp_path):
    """--every 2 on 5 frames: frames 0, 2, 4 processed, 2 counted as skipped (none dropped)."""
    model_dir, supports = model
    video = _write_video(tmp_path / "clip.avi", 5, S, S)
    out = tmp_path / "seg.avi"
    res = runner.invoke(app, ["stream", str(video), "--model", str(model_dir), "--support", str(supports[0]),
                              "--every", "2", "--out", str(out), "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "3 of 5 frame(s) segmented" in res.output
    assert [ln["frame"] for ln in _jsonl(stream_paths(out)["jsonl"])] == [0, 2, 4]
    doc = json.loads(stream_paths(out)["summary"].read_text())
    assert (doc["frames_in"], doc["skipped"], doc["dropped"], doc["frames_out"]) == (5, 2, 0, 3)
    assert len(_decode(out)) == 3


class SlowPredictor:
    """A real Predictor whose predict() takes at least ``delay`` s more; records each call's time."""

    def __init__(self, inner: Predictor, delay: float, on_call: Callable[[int], None] | None = None) -> None:
        self.inner, self.delay, self.on_call = inner, delay, on_call
        self.durations: list[float] = []

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def predict(self, *args, **kwargs):
        t0 = time.perf_counter()
        if self.on_call is not None:
            self.on_call(len(self.durations))
        time.sleep(self.delay)
        pred = self.inner.predict(*args, **kwargs)
        self.durations.append(time.perf_counter() - t0)
        return pred


def test_realtime_keeps_latency_bounded_and_counts_drops(predictor, tmp_path):
    """Inference (>= 0.15 s) slower than the camera (20 fps): --realtime must drop frames (counted),
    keep the frame queue at its bound of 1, process the newest frame (the last one included), and
    keep every latency within about two inference times (waiting for the one in progress + its
    own), instead of growing with the backlog (30 frames x 0.15 s = 4.5 s for the last one)."""
    slow = SlowPredictor(predictor, 0.15)
    video = _write_video(tmp_path / "camera.avi", 30, S, S, fps=20.0)
    got: list[FrameResult] = []
    out = tmp_path / "rt.mp4"
    with open_frames(video) as src:
        summary = run_stream(slow, src, StreamOptions(realtime=True), out, on_result=got.append)
    assert summary.frames_in == 30 and summary.skipped == 0 and summary.unprocessed == 0
    assert summary.dropped > 0 and summary.dropped + summary.frames_out == 30
    assert summary.frames_out < 20, "a 1.5 s stream at >= 0.15 s per frame cannot process 20 frames"
    assert summary.queue_bound == 1 and summary.queue_max_depth == 1
    indices = [r.frame.index for r in got]
    assert indices == sorted(set(indices)) and indices[-1] == 29
    bound = 2 * max(slow.durations) + 0.25  # + capture/output jitter on a shared CPU
    assert max(r.latency for r in got) <= bound, ([round(r.latency, 3) for r in got], bound)
    assert summary.latency_ms["p99"] <= bound * 1000
    assert len(_jsonl(stream_paths(out)["jsonl"])) == summary.frames_out == len(_decode(out))
    doc = json.loads(stream_paths(out)["summary"].read_text())
    assert doc["dropped"] == summary.dropped and doc["queue_max_depth"] == 1


def test_without_realtime_every_frame_is_processed(predictor, tmp_path):
    """Same slow inference without --realtime: no frame dropped, capture waits on the queue (bound 4)."""
    slow = SlowPredictor(predictor, 0.05)
    video = _write_video(tmp_path / "camera.avi", 12, S, S, fps=50.0)
    with open_frames(video) as src:
        summary = run_stream(slow, src, StreamOptions(), None)
    assert (summary.frames_in, summary.dropped, summary.frames_out) == (12, 0, 12)
    assert summary.queue_bound == 4 and 1 <= summary.queue_max_depth <= 4
    assert summary.outputs == {}


def test_summary_options_are_flat_with_the_scene_options_as_given(predictor, tmp_path):
    """StreamOptions.scene (a SceneOptions) is written into the summary as its four fields, as given (tile
    None: the model input); the nested dataclass itself is left out (it was `infer` before the rename)."""
    from icpd.runtime.tiling import SceneOptions

    video = _write_video(tmp_path / "camera.avi", 2, S, S)
    with open_frames(video) as src:
        summary = run_stream(predictor, src, StreamOptions(every=2, scene=SceneOptions(overlap=8, batch=2)), None)
    assert summary.options == {"realtime": False, "every": 2, "queue_size": None, "max_frames": None, "alpha": 0.5,
                               "threshold": 0.5, "tile": None, "overlap": 8, "batch": 2}


def test_stop_drains_frames_in_flight(predictor, tmp_path):
    """Guards the drain on stop: the frame capture holds while the queue is full is in flight too.
    It must be queued and processed, not lost (before the fix: unprocessed == 1). The stop comes
    while frame 1 is being predicted (0.3 s), so capture, waiting on the full queue, sees it."""
    stop = threading.Event()
    slow = SlowPredictor(predictor, 0.3, on_call=lambda calls: stop.set() if calls == 1 else None)
    video = _write_video(tmp_path / "clip.avi", 20, S, S)
    with open_frames(video) as src:
        summary = run_stream(slow, src, StreamOptions(queue_size=1), None, stop=stop)
    assert summary.interrupted and summary.end_reason == "interrupted"
    assert summary.unprocessed == 0 and summary.dropped == 0
    assert summary.frames_out == summary.frames_in >= 3  # frame 0 + the queued one + the one capture held
    assert summary.queue_max_depth == 1


@pytest.mark.parametrize("with_stop", [False, True])
def test_an_inference_error_keeps_its_traceback_and_the_outputs_are_finalised(predictor, tmp_path, with_stop):
    """An internal error (here the predictor's third call) is raised to the caller, not swallowed
    into an exit code, also when a stop (Ctrl-C) came at the same time (it was swallowed then);
    the frames before it are in a playable video, the JSONL and the summary."""
    stop = threading.Event()

    def fail_third(calls: int) -> None:
        if calls == 2:
            if with_stop:
                stop.set()
            raise RuntimeError("backend crashed")

    video = _write_video(tmp_path / "clip.avi", 8, S, S)
    out = tmp_path / "seg.avi"
    with open_frames(video) as src, pytest.raises(RuntimeError, match="backend crashed"):
        run_stream(SlowPredictor(predictor, 0.0, on_call=fail_third), src, StreamOptions(), out, stop=stop)
    doc = json.loads(stream_paths(out)["summary"].read_text())
    assert doc["end_reason"] == "error: RuntimeError: backend crashed" and not doc["interrupted"]
    assert doc["frames_out"] == 2 == len(_jsonl(stream_paths(out)["jsonl"])) == len(_decode(out))


def test_frame_queue_drops_oldest_and_never_exceeds_its_bound():
    q = FrameQueue(2, drop_oldest=True)
    for i in range(5):
        assert q.put(i, lambda: False)
    q.close()
    assert (q.dropped, q.max_depth) == (3, 2)
    assert [q.get(), q.get(), q.get()] == [3, 4, None]
    blocking = FrameQueue(1)
    assert blocking.put("a", lambda: False)
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    assert not blocking.put("b", stop.is_set), "a full queue must give up when told to stop"
    assert blocking.max_depth == 1 and blocking.dropped == 0


def test_sigint_stops_cleanly_with_playable_video_and_complete_jsonl(model, tmp_path):
    """Ctrl-C midway through a real `icpd stream` process: exit 130, no traceback, the JSONL holds
    exactly the frames processed (0..n-1, each line whole), the video re-opens with n frames,
    the summary says interrupted."""
    model_dir, supports = model
    video = _write_video(tmp_path / "long.avi", 600, S, S)
    out = tmp_path / "seg.mp4"
    cmd = [sys.executable, "-m", "icpd.cli", "stream", str(video), "--model", str(model_dir),
           "--support", str(supports[0]), "--out", str(out), "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    jsonl = stream_paths(out)["jsonl"]
    deadline = time.monotonic() + 180
    while not (jsonl.is_file() and len(jsonl.read_text().splitlines()) >= 3):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no frame processed within 180 s"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    lines = _jsonl(jsonl)
    n = len(lines)
    assert 3 <= n < 600 and [ln["frame"] for ln in lines] == list(range(n))
    assert len(_decode(out)) == n
    doc = json.loads(stream_paths(out)["summary"].read_text())
    assert doc["interrupted"] and doc["end_reason"] == "interrupted"
    assert doc["frames_out"] == n and doc["dropped"] == 0 and doc["unprocessed"] == 0
    assert f"{n} of" in stdout


def test_a_source_cut_short_ends_the_run_cleanly_with_the_reason(model, predictor, tmp_path):
    """A recording cut off midway (a truncated file) and a frame folder with a corrupt frame are
    sources that stop early: exit 0, every frame before the cut processed, the reason in the summary."""
    model_dir, supports = model
    whole = _write_video(tmp_path / "whole.avi", 20, S, S).read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole[: len(whole) // 2])
    readable = len(_decode(cut))
    assert 0 < readable < 20
    out = tmp_path / "seg.mp4"
    res = runner.invoke(app, ["stream", str(cut), "--model", str(model_dir), "--support", str(supports[0]),
                              "--out", str(out), "--threads", "1"])
    assert res.exit_code == 0, res.output
    doc = json.loads(stream_paths(out)["summary"].read_text())
    assert doc["end_reason"] == f"read error after frame {readable} of 20" and not doc["interrupted"]
    assert doc["frames_out"] == readable == len(_jsonl(stream_paths(out)["jsonl"]))

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, rgb in enumerate(_decode(cut)[:3]):
        cv2.imwrite(str(folder / f"f{i}.png"), rgb[:, :, ::-1])
    (folder / "f3.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with open_frames(folder) as src:
        summary = run_stream(predictor, src, StreamOptions())
    assert summary.frames_out == 3
    assert summary.end_reason.startswith("frame 3 unreadable") and "f3.png" in summary.end_reason


def test_bad_sources_exit_2_naming_them(model, tmp_path):
    model_dir, supports = model
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    empty = tmp_path / "empty"
    empty.mkdir()
    for source, words in ((str(tmp_path / "nope.mp4"), "no such file"), (str(fake), "could not open"),
                          (str(empty), "no images"), ("rtsp://127.0.0.1:9/none", "could not open")):
        res = runner.invoke(app, ["stream", source, "--model", str(model_dir), "--support", str(supports[0])])
        assert res.exit_code == 2, (source, res.output)
        assert source in res.output and words in res.output and "Traceback" not in res.output
    video = _write_video(tmp_path / "ok.avi", 2, S, S)
    res = runner.invoke(app, ["stream", str(video), "--model", str(model_dir), "--support", str(supports[0]),
                              "--out", str(tmp_path / "seg.gif")])
    assert res.exit_code == 2 and "seg.gif" in res.output and ".mp4 or .avi" in res.output
