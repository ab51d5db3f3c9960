"""Cases found by probing the CLI as a new user (issue 20's classes): each a real `icpd` run where it
matters, and the Python API's refusal in the same words."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from icpd.runtime.validation import InputError, check_threads


def _icpd(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "icpd.cli", *args], check=False, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"})


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
        (f"error: --threads: must be from 1 to {_limit()} (got 10000; this machine has {os.cpu_count()} CPUs, "
         f"and more than 4 threads a CPU only add overhead); pass a value from 1 to {_limit()}")]
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
        ("error: source clip.mp4: OpenCV could not open it (moov atom not found); check that it is a video file "
         "OpenCV's FFmpeg backend can decode (e.g. .mp4, .avi, .mkv)")]


def test_a_folder_where_a_support_or_embeddings_file_belongs_is_called_a_folder(tmp_path):
    """'--support DIR: file not found' sent the user looking for a file that was there, as a folder."""
    (tmp_path / "ship.support").mkdir()
    cv2.imwrite(str(tmp_path / "q.png"), np.zeros((8, 8, 3), np.uint8))
    res = _icpd("infer", "q.png", "--model", ".", "--support", "ship.support", "--out", "o", "-q", cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert res.stderr.splitlines() == [
        "error: --support ship.support: a folder, not a file; create it with `icpd cache-support`"]
    from icpd.artifacts.support_cache import SupportCacheError, SupportSet
    from icpd.model.text import load_class_embeddings

    with pytest.raises(SupportCacheError, match=r"^support cache .*ship.support: a folder, not a file; create it"):
        SupportSet.load(tmp_path / "ship.support")
    with pytest.raises(ValueError, match=r"^class embeddings .*ship.support: a folder, not a file; make one with"):
        load_class_embeddings(tmp_path / "ship.support")


def test_predictor_load_and_add_support_name_the_argument_of_a_wrong_type(tiny_model_dir):
    """Predictor.load(None) / add_support(None) gave os.fspath's 'expected str, bytes or os.PathLike object'."""
    from icpd.runtime.predictor import Predictor

    with pytest.raises(InputError, match=r"^model_dir: got NoneType \(None\); pass the path of a model directory"):
        Predictor.load(None)
    p = Predictor.load(tiny_model_dir, backend="ort", threads=1)
    for wrong in (None, {"a": 1}):
        with pytest.raises(InputError, match=rf"^support: got {type(wrong).__name__}; pass a SupportSet"):
            p.add_support(wrong)
    assert p.supports == []


@pytest.mark.parametrize(("content", "said"), [
    (b"\x00" * 500, ("not a safetensors file (no safetensors header; truncated, or another format under this name); "
                     "re-export it, or rename a torch.save file to .pt")),
    (None, "file not found; pass the path of a .pt or .safetensors file")])
def test_eval_of_a_truncated_or_missing_safetensors_checkpoint_is_one_line(content, said, tmp_path):
    """A truncated checkpoint gave a SafetensorError traceback (exit 1); a missing one 'records no class embeddings'."""
    if content is not None:
        (tmp_path / "c.safetensors").write_bytes(content)
    res = _icpd("eval", "--dataset", "isaid5i", "--root", ".", "--fold", "0", "--checkpoint", "c.safetensors",
                "--preset", "tiny", "-q", cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert res.stderr.splitlines() == [f"error: checkpoint c.safetensors: {said}"]


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height RGB and whose data holds two rows (a decompression bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\x00" * (1 + 3 * width) * 2)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def test_a_png_declaring_more_pixels_than_opencv_decodes_says_so(tmp_path):
    """A PNG claiming 100000x100000 px was refused as 'truncated or not really an image? Re-export it.'"""
    from icpd.io import ImageError, read_image

    (tmp_path / "bomb.png").write_bytes(_png_header_only(100_000, 100_000))
    with pytest.raises(ImageError) as e:
        read_image(tmp_path / "bomb.png")
    assert str(e.value) == (
        f"image {tmp_path / 'bomb.png'}: its header declares 100000x100000 (WxH) px (10,000 megapixels), more than "
        "OpenCV decodes (1,074 Mpx, CV_IO_MAX_IMAGE_PIXELS); cut the scene into a tiled GeoTIFF (read window by "
        "window) or smaller PNGs, or re-export it if the header is wrong")
    (tmp_path / "short.png").write_bytes(_png_header_only(300, 200)[:40])  # within the limit: truncated, as before
    with pytest.raises(ImageError, match="could not be decoded as an image"):
        read_image(tmp_path / "short.png")


@pytest.mark.parametrize(("args", "line"), [
    (["train", "--dataset", "isaid5i", "--root", "r", "--fold", "0", "--class-embeddings", "e.safetensors",
      "--out", "run", "--lr", "inf"],
     "error: --lr: must be a finite number (got inf); pass a finite value, e.g. 0.0001"),
    (["bench", "--quick", "--rounds", "0", "--duration", "inf"],
     "error: --duration: must be a finite number (got inf); pass a finite value"),
    (["bench", "--quick", "--warmup", "inf"],
     "error: --warmup: must be a finite number (got inf); pass a finite value"),
    (["stream", "clip.mp4", "--model", "m", "--support", "s.support", "--fps", "inf"],
     "error: --fps: must be a finite number (got inf); pass a finite value"),
    (["export", "--checkpoint", "c.safetensors", "--out", "m", "--precision", "int8", "--int8-min-speedup", "inf"],
     "error: --int8-min-speedup: must be a finite number (got inf); pass a finite value"),
    (["build", "--model", "m", "--workspace", "inf"],
     "error: --workspace: must be a finite number (got inf); pass a finite value, e.g. 4.0"),
    (["build", "--model", "m", "--workspace", "-1"],
     "error: --workspace: must be >= 0.001 (got -1); pass a value >= 0.001")])
def test_infinite_float_options_are_refused(args, line, tmp_path):
    """--lr inf trained to NaN weights and exited 0; bench --duration/--warmup inf would measure forever."""
    res = _icpd(*args, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert res.stderr.splitlines() == [line]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [
    ["train", "--dataset", "isaid5i", "--root", "r", "--fold", "0", "--class-embeddings", "e.safetensors",
     "--out", "run"],
    ["eval", "--dataset", "isaid5i", "--root", "r", "--fold", "0", "--checkpoint", "c.safetensors"]])
def test_workers_far_above_the_cpus_is_one_error_line(command, tmp_path):
    """--workers 100000 forked DataLoader workers for minutes; stopped by SIGTERM, the run left some behind."""
    res = _icpd(*command, "--workers", "100000", cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert res.stderr.splitlines() == [(f"error: --workers: must be from 0 to {_limit()} (got 100000; this machine "
                                        f"has {os.cpu_count()} CPUs); pass a value from 0 to {_limit()}")]
    assert list(tmp_path.iterdir()) == []


def test_a_scene_with_a_side_below_a_quarter_of_the_model_input_is_segmented_with_a_note(tiny_model_dir, tmp_path):
    """A 1x1 or 20x300 px query is padded by reflection to one tile and segmented; the user is told how
    little the network saw (supports and tiles of that size are refused as blur). 100x90 gets no note."""
    import json

    from icpd.apps.infer.local import InferOptions, infer_paths, open_predictor
    from icpd.io import write_png
    from tests.runtime.supports import make_supports

    supports = make_supports(tiny_model_dir, tmp_path)
    rng = np.random.default_rng(0)
    for name, shape in {"dot": (1, 1, 3), "strip": (20, 300, 3), "ok": (100, 90, 3)}.items():
        write_png(tmp_path / f"{name}.png", rng.integers(0, 255, shape, dtype=np.uint8))
    p = open_predictor(tiny_model_dir, supports)
    summary = infer_paths(p, [tmp_path / f"{n}.png" for n in ("dot", "strip", "ok")], tmp_path / "out", InferOptions())
    notes = {Path(r.path).stem: r.notes for r in summary.results}
    assert all(r.status == "ok" for r in summary.results)
    tail = "(a quarter of the model input, 128 px); padded by reflection to the 128 px tile, never stretched"
    assert notes["dot"] == [f"1x1 px (HxW): a side below 32 px {tail}: so few pixels give unreliable masks"]
    assert notes["strip"] == [f"20x300 px (HxW): a side below 32 px {tail}: so few pixels give unreliable masks"]
    assert notes["ok"] == []
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    saved = {Path(r["path"]).stem: r["notes"] for r in written["inputs"]}
    assert saved["dot"] == notes["dot"]
