"""`icpd build` / `icpd validate` from the command line."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from icpd.cli import app

runner = CliRunner()
no_tensorrt = pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")


@no_tensorrt
def test_build_without_tensorrt_is_a_clear_error(tiny_sort_dir, tmp_path):
    """A model dir that passes the static check gets as far as importing TensorRT (a topk one stops at the check)."""
    res = runner.invoke(app, ["build", "--model", str(tiny_sort_dir), "--out", str(tmp_path / "e"),
                              "--precision", "fp16"])
    assert res.exit_code == 2
    assert "error: TensorRT is not available here" in res.output
    assert not (tmp_path / "e").exists()


@no_tensorrt
def test_validate_trt_without_tensorrt_is_a_clear_error(tiny_model_dir, tmp_path):
    res = runner.invoke(app, ["validate", "--model", str(tiny_model_dir), "--engines", str(tmp_path),
                              "--backends", "torch,trt"])
    assert res.exit_code == 2
    assert "error: TensorRT is not available here" in res.output


def test_bad_options_exit_2(tiny_model_dir, tmp_path):
    res = runner.invoke(app, ["build", "--model", str(tiny_model_dir), "--out", str(tmp_path / "e"),
                              "--batch", "4,2,1"])
    assert res.exit_code == 2 and "--batch 4,2,1: need 1 <= MIN <= OPT <= MAX" in res.output
    res = runner.invoke(app, ["validate", "--model", str(tiny_model_dir), "--backends", "torch,onnx"])
    assert res.exit_code == 2 and "--backends torch,onnx: choose from torch, ort, trt" in res.output
    res = runner.invoke(app, ["validate", "--model", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "not a directory" in res.output


def test_validate_torch_ort_reports_stats_and_passes(tiny_model_dir, tmp_path):
    report = tmp_path / "report.json"
    res = runner.invoke(app, ["validate", "--model", str(tiny_model_dir), "--backends", "torch,ort", "--runs", "2",
                              "--json", str(report)])
    assert res.exit_code == 0, res.output
    assert "[ort] precision fp32" in res.output and "logits" in res.output
    assert res.output.rstrip().endswith(f"wrote {report}")
    d = json.loads(report.read_text())
    assert d["passed"] and set(d["backends"]) == {"torch", "ort"}
    ort = d["backends"]["ort"]
    assert ort["mean_foreground_iou"] >= 0.999 and len(ort["masks"]) == 2
    # float32 ORT vs torch: op-order round-off only (same bounds as the export's self-check)
    assert ort["outputs"]["logits"]["max_abs"] < 1e-3 * max(1.0, ort["outputs"]["logits"]["ref_max"])
    assert {"images", "feat_clip", "query_prior", "pyramid_l2"} <= set(ort["outputs"])
    assert d["backends"]["torch"]["outputs"]["logits"]["max_abs"] == 0.0  # torch on the CPU is the reference


def test_validate_as_a_subprocess(tiny_model_dir):
    res = subprocess.run([sys.executable, "-m", "icpd.cli", "validate", "--model", str(tiny_model_dir),
                          "--backends", "ort", "--runs", "1", "--batch", "1"],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.rstrip().endswith("PASS")


def test_internal_errors_keep_their_traceback(tiny_model_dir, monkeypatch):
    """Issue 10, defect 4: `icpd validate` caught RuntimeError, so an internal torch/ORT failure printed as a
    one-line user error with exit 2. Only the project's own error types are user errors now."""
    import icpd.apps.validate

    def broken(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code")

    monkeypatch.setattr(icpd.apps.validate, "validate_model", broken)
    res = runner.invoke(app, ["validate", "--model", str(tiny_model_dir), "--backends", "ort"])
    assert res.exit_code != 2 and isinstance(res.exception, RuntimeError)
    assert "error: [ONNXRuntimeError]" not in res.output


def test_project_errors_are_one_line_user_errors(tiny_model_dir, monkeypatch):
    import icpd.apps.validate
    from icpd.artifacts.engine_sidecar import EngineMismatchError

    def mismatch(*args, **kwargs):
        raise EngineMismatchError("engines.json: built for another GPU; rebuild with `icpd build`")

    monkeypatch.setattr(icpd.apps.validate, "validate_model", mismatch)
    res = runner.invoke(app, ["validate", "--model", str(tiny_model_dir), "--backends", "ort"])
    assert res.exit_code == 2
    assert res.output.strip() == "error: engines.json: built for another GPU; rebuild with `icpd build`"


def test_validate_quiet_prints_nothing_on_pass(tiny_model_dir):
    res = runner.invoke(app, ["validate", "--model", str(tiny_model_dir), "--backends", "ort", "--runs", "1", "-q"])
    assert res.exit_code == 0, res.output
    assert res.output == ""
