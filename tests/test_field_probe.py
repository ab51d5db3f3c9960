"""Cases found by probing the CLI as a new user (issue 20's classes): each a real `icpd` run where it
matters, and the Python API's refusal in the same words."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from icpd.runtime.validation import InputError, check_threads


def _icpd(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "icpd.cli", *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _limit() -> int:
    return max(16, 4 * (os.cpu_count() or 1))


@pytest.mark.parametrize("command", [["infer", "x.png", "--support", "s.support", "--out", "o"],
                                     ["bench", "--quick"]])
def test_threads_far_above_the_cpus_is_one_error_line(command, tmp_path):
    """--threads 10000 made ONNX Runtime start 10,000 threads: `icpd infer` ran on for minutes, deaf to SIGTERM."""
    model = ["--model", "m"] if command[0] == "infer" else []
    res = _icpd(*command, *model, "--threads", "10000", cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [
        f"error: --threads: must be from 1 to {_limit()} (got 10000; this machine has {os.cpu_count()} CPUs, "
        f"and more than 4 threads a CPU only add overhead); pass a value from 1 to {_limit()}"]
    assert list(tmp_path.iterdir()) == []


def test_predictor_threads_above_the_limit_in_the_same_words():
    with pytest.raises(InputError, match=rf"^threads: must be from 1 to {_limit()} \(got 100000;"):
        check_threads(100000)
    assert check_threads(_limit()) == _limit()


@pytest.mark.parametrize("content", [b"", b"not a video\n"])
def test_stream_of_a_file_that_is_no_video_is_one_line_with_ffmpegs_reason(content, tmp_path):
    """FFmpeg printed '[mov,mp4,... @ 0x...] moov atom not found' on its own line above the error line."""
    (tmp_path / "clip.mp4").write_bytes(content)
    res = _icpd("stream", "clip.mp4", "--model", "m", "--support", "s.support", "-q", cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert res.stderr.splitlines() == [
        "error: source clip.mp4: OpenCV could not open it (moov atom not found); check that it is a video file "
        "OpenCV's FFmpeg backend can decode (e.g. .mp4, .avi, .mkv)"]
