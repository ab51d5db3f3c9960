"""The backends' and the benchmark's refusals name Python parameters; the CLI prints the same words with
its flags (icpd.errors.arg, icpd.commands.console.cli_text; issue 22 section 3). The companion of
tests/test_cli_param_errors.py for icpd/runtime/backends and icpd/benchmarks.

``cli_text`` outside a running command writes each parameter as its usual flag (``engine_dir`` is
``--engines``), the words ``icpd infer``/``icpd bench`` printed before: those are pinned here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from icpd.cli import app
from icpd.commands.console import cli_text
from icpd.errors import ParamError
from tests.cli_errors import error_line

runner = CliRunner()


def test_torch_backend_runtime_only_dir_and_device(tmp_path: Path):
    pytest.importorskip("torch")
    import torch

    from icpd.runtime.backends.torch import TorchBackend

    files = {"encoder": tmp_path / "m" / "encoder.onnx"}
    with pytest.raises(ParamError) as err:
        TorchBackend(files)
    assert str(err.value).endswith("export without --runtime-only, or pass backend=ort")  # a command stays
    assert err.value.param == "backend"
    assert cli_text(err.value).endswith("export without --runtime-only, or pass --backend ort")

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: the no-CUDA refusal cannot happen")
    with pytest.raises(ParamError) as err:
        TorchBackend({**files, "weights": tmp_path / "m" / "model.safetensors"}, device="cuda:1")
    assert (str(err.value), err.value.param) == ("device=cuda:1: torch sees no CUDA device here; use device=cpu",
                                                 "device")
    assert cli_text(err.value) == "--device cuda:1: torch sees no CUDA device here; use --device cpu"


def test_trt_backend_engines_and_device(tmp_path: Path):
    from icpd.runtime.backends.trt import TrtBackend

    with pytest.raises(ParamError) as err:
        TrtBackend(None, None)  # type: ignore[arg-type]  # refused before the model dir is read
    assert str(err.value) == ("backend=trt needs engine_dir=ENGINE_DIR (build it with `icpd build --model "
                              "MODEL_DIR --out ENGINE_DIR`)")
    assert err.value.param == "engine_dir"
    assert cli_text(err.value) == ("--backend trt needs --engines ENGINE_DIR (build it with `icpd build --model "
                                   "MODEL_DIR --out ENGINE_DIR`)")
    with pytest.raises(ParamError) as err:
        TrtBackend(None, tmp_path / "e", device="cpu")  # type: ignore[arg-type]
    assert str(err.value) == "device=cpu: the TensorRT backend runs on a GPU; use device=cuda[:N]"
    assert cli_text(err.value) == "--device cpu: the TensorRT backend runs on a GPU; use --device cuda[:N]"


def test_bench_backends_list():
    from icpd.benchmarks.subjects import parse_backends

    with pytest.raises(ParamError) as err:
        parse_backends("tpu")
    assert str(err.value).startswith("backends: unknown backend 'tpu'; choose from auto, ")
    assert err.value.param == "backends"
    assert cli_text(err.value).startswith("--backends: unknown backend 'tpu'; choose from auto, ")
    with pytest.raises(ParamError) as err:
        parse_backends(" , ")
    assert str(err.value) == "backends: no backend given; use auto or e.g. ort-cpu,torch-cpu"
    assert cli_text(err.value) == "--backends: no backend given; use auto or e.g. ort-cpu,torch-cpu"


def test_bench_cache_dir_too_small(tmp_path: Path, monkeypatch):
    """Plan.refusal is an error (it was a string with the flags in it): icpd bench prints it with its flags."""
    import dataclasses

    from icpd.benchmarks import budget

    plan = dataclasses.replace(budget.plan_run("paper", False, None, None, tmp_path), free_bytes=1_000_000_000)
    refusal = plan.refusal()
    assert isinstance(refusal, ParamError) and refusal.param == "cache_dir"
    assert str(refusal) == (f"cache_dir={tmp_path}: the paper export needs about 2.9 GB, only 1.0 GB free there; "
                            "free some space, pass cache_dir on a larger disk, or quick=True (the tiny preset, "
                            "about 17 MB)")

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(budget.shutil, "disk_usage", lambda p: usage._replace(free=1_000_000_000))  # a full disk
    line = error_line(runner.invoke(app, ["bench", "--cache-dir", str(tmp_path), "--backends", "ort-cpu"]))
    assert line.endswith(f"error: --cache-dir {tmp_path}: the paper export needs about 2.9 GB, only 1.0 GB free "
                         "there; free some space, pass --cache-dir on a larger disk, or --quick (the tiny preset, "
                         "about 17 MB)")
    assert list(tmp_path.iterdir()) == []
