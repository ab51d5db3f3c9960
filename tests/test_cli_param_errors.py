"""Library errors name the Python parameter, never a command-line flag; the CLI prints the running
command's flag in the same words (icpd.errors, icpd.commands.console.cli_text; issue 22 section 3).

One representative per area: infer's tile options, build's workspace, export's INT8 options, stream's
options, train's options. Each checks the library's exact words (and that no ``--`` appears) and what
``icpd`` prints for the same refusal.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from icpd.apps.infer.options import InferOptions
from icpd.apps.stream.pipeline import StreamOptions
from icpd.apps.stream.video import video_fourcc
from icpd.cli import app
from icpd.errors import ParamError
from icpd.export.calibration import Int8ConversionError, calibration_images
from icpd.trt.build import build_engines
from tests.cli_errors import error_line

runner = CliRunner()


def test_infer_tile_options(tmp_path: Path):
    with pytest.raises(ParamError) as err:
        InferOptions(tile=64, overlap=64)
    assert str(err.value) == "overlap=64: must satisfy 0 <= overlap < tile (64); e.g. overlap=16"
    assert err.value.param == "overlap"
    with pytest.raises(ParamError) as err:
        InferOptions(tile=16)
    assert str(err.value).startswith("tile=16: too small for any model: ") and err.value.param == "tile"
    assert str(err.value).endswith("omit tile to use the model input size") and "--" not in str(err.value)

    args = ["infer", str(tmp_path / "a.png"), "--model", str(tmp_path / "m"), "--support",
            str(tmp_path / "s.support"), "--out", str(tmp_path / "out")]
    line = error_line(runner.invoke(app, [*args, "--tile", "64", "--overlap", "64"]))
    assert line == "error: --overlap 64: must satisfy 0 <= overlap < tile (64); e.g. --overlap 16"
    line = error_line(runner.invoke(app, [*args, "--tile", "16"]))
    assert line.startswith("error: --tile 16: too small for any model: ")
    assert line.endswith("omit --tile to use the model input size")


def test_build_workspace(tmp_path: Path):
    """build_engines(workspace=) is bytes, a size_t for TensorRT: checked before any model or TensorRT."""
    with pytest.raises(ParamError) as err:
        build_engines(tmp_path / "no-model", tmp_path / "e", workspace=0)
    assert str(err.value) == ("workspace=0 bytes (0 GiB): the builder's memory limit must be from 1 to "
                              "18446744073709551615 bytes (TensorRT's size_t); pass one in that range, e.g. "
                              "4 << 30 (4 GiB)")
    assert err.value.param == "workspace"
    with pytest.raises(ParamError, match=r"^workspace=4\.0: not a whole number of bytes; pass an int"):
        build_engines(tmp_path / "no-model", tmp_path / "e", workspace=4.0)

    # --workspace is GiB: 1e11 GiB is 2**30 * 1e11 bytes, beyond a size_t (was a TypeError in TensorRT)
    line = error_line(runner.invoke(app, ["build", "--model", str(tmp_path / "no-model"),
                                           "--out", str(tmp_path / "e"), "--workspace", "1e11"]))
    assert line.startswith("error: --workspace 107374182400000000000 bytes (1e+11 GiB): the builder's "
                           "memory limit must be from 1 to 18446744073709551615 bytes")
    assert not (tmp_path / "e").exists()


def test_export_int8_calibration(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Int8ConversionError) as err:
        calibration_images(empty, 128)
    assert str(err.value) == f"calibration={empty}: no .png/.jpg/.tif images in it"
    assert err.value.param == "calibration"

    # the export's FP32 model converts, then the calibration folder is read: the ExportError that wraps
    # the conversion's error keeps its flag
    out = tmp_path / "m"
    line = error_line(runner.invoke(app, ["export", "--random-weights", "--preset", "tiny", "--precision",
                                           "int8", "--calibration", str(empty), "--out", str(out),
                                           "--no-validate", "-q"]))
    assert line == f"error: --calibration {empty}: no .png/.jpg/.tif images in it"
    assert not out.exists()


def test_stream_options(tmp_path: Path):
    with pytest.raises(ParamError) as err:
        StreamOptions(queue_size=0).for_model(128)
    assert (str(err.value), err.value.param) == ("queue_size=0: must be >= 1", "queue_size")
    with pytest.raises(ParamError, match=r"^every=0: must be >= 1 \(1 processes every frame\)$"):
        StreamOptions(every=0).for_model(128)
    with pytest.raises(ParamError, match=r"^max_frames=-1: must be >= 0$"):
        StreamOptions(max_frames=-1).for_model(128)
    with pytest.raises(ParamError) as err:
        video_fourcc(Path("seg.gif"))
    assert str(err.value) == "out=seg.gif: the overlay video must end in .mp4 or .avi"

    args = ["stream", str(tmp_path / "in.mp4"), "--model", str(tmp_path / "m"),
            "--support", str(tmp_path / "s.support")]
    line = error_line(runner.invoke(app, [*args, "--out", str(tmp_path / "seg.gif")]))
    assert line == f"error: --out {tmp_path / 'seg.gif'}: the overlay video must end in .mp4 or .avi"
    # StreamOptions were made outside the command's error handling: this was a traceback
    line = error_line(runner.invoke(app, [*args, "--tile", "64", "--overlap", "64"]))
    assert line == "error: --overlap 64: must satisfy 0 <= overlap < tile (64); e.g. --overlap 16"


def test_train_options(tmp_path: Path):
    from icpd.training.train import TrainConfig, train

    emb = tmp_path / "e.safetensors"
    cfg = TrainConfig("isaid5i", tmp_path / "data", 0, 1, emb, tmp_path / "run", preset="paper",
                      train_encoders=True, quiet=True)
    with pytest.raises(ParamError) as err:
        train(cfg)
    assert str(err.value) == ("train_encoders=True is for the tiny preset only; preset 'paper' keeps the "
                              "authors' frozen encoders")
    assert err.value.param == "train_encoders"

    (tmp_path / "data").mkdir()
    emb.write_bytes(b"")
    line = error_line(runner.invoke(app, ["train", "--dataset", "isaid5i", "--root", str(tmp_path / "data"),
                                           "--fold", "0", "--class-embeddings", str(emb),
                                           "--out", str(tmp_path / "run"), "--preset", "paper",
                                           "--train-encoders"]))
    assert line == ("error: --train-encoders is for the tiny preset only; preset 'paper' keeps the authors' "
                    "frozen encoders")
    assert not (tmp_path / "run").exists()


def test_every_area_names_parameters_not_flags():
    """The class of defect: no error message in icpd's library layers writes a flag itself (the command
    layer adds them). Messages that name a COMMAND to run (`icpd export --rank-prior topk`) stay."""
    import re

    root = Path(__file__).resolve().parents[1] / "icpd"
    mine = ["trt/build.py", "trt/check.py", "export/quantize.py", "export/calibration.py",
            "export/ort_session.py", "export/fp16.py", "export/onnx.py", "artifacts/model_dir.py",
            "kernels/tensorrt.py", "kernels/ort_custom_op.py", "benchmarks/precision.py",
            "benchmarks/latency.py", "selftest/run.py", "model/text.py", "training/train.py",
            "training/train_state.py",
            "training/evaluate.py", "training/predict.py", "training/distributed.py", "apps/validate.py",
            "runtime/tiling.py", "runtime/validation.py", "apps/infer/local.py", "apps/infer/session.py",
            "apps/infer/ray_runner.py", "apps/stream/pipeline.py", "apps/stream/video.py",
            "runtime/backends/torch.py", "runtime/backends/trt.py", "runtime/environment.py",
            "benchmarks/subjects.py", "benchmarks/budget.py"]
    raising = re.compile(r"(?:raise \w+\(|Error\()\s*f?\"--[a-z]")
    offenders = []
    for rel in mine:
        text = (root / rel).read_text()
        offenders += [f"{rel}: {m.group(0)}" for m in raising.finditer(text)]
    assert offenders == []
