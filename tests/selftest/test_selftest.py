"""`icpd selftest`: every step reported (pass, fail with error and fix, or skip with the reason),
one JSON document and a table, on this machine without a GPU."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from icpd.cli import app
from icpd.selftest import backends
from icpd.selftest.run import run_selftest

runner = CliRunner()
GPU_STEPS = ("kernel_coverage", "kernel_cuda", "torch_cuda", "trt_sort", "trt_plugin")
CPU_STEPS = ("environment", "rank_prior_cpu", "export", "ort_vs_torch_cpu", "latency")


@pytest.mark.slow
def test_cpu_run_passes_the_cpu_steps_and_skips_the_gpu_steps(tmp_path, monkeypatch):
    monkeypatch.setenv("ICPD_CACHE_DIR", str(tmp_path / "cache"))
    stale = tmp_path / "cache" / "selftest" / "tiny-sort-0000000000000000"  # an export of other sources
    stale.mkdir(parents=True)
    res = runner.invoke(app, ["selftest", "--device", "cpu", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "selftest.json").read_text())
    assert doc["format"] == "icpd-selftest" and doc["device"] == "cpu" and doc["passed"] is True
    status = {s["name"]: s["status"] for s in doc["steps"]}
    assert list(status) == ["environment", "rank_prior_cpu", "kernel_coverage", "kernel_cuda", "export",
                            "ort_vs_torch_cpu", "torch_cuda", "trt_sort", "trt_plugin", "latency"]
    assert {n: status[n] for n in CPU_STEPS} == dict.fromkeys(CPU_STEPS, "pass")
    reasons = {s["name"]: s["reason"] for s in doc["steps"] if s["status"] == "skip"}
    assert reasons == dict.fromkeys(GPU_STEPS, "device cpu: GPU steps run on a CUDA device (device cuda or cuda:N)")
    steps = {s["name"]: s for s in doc["steps"]}
    ort = steps["ort_vs_torch_cpu"]["details"]["ort"]
    assert ort["passed"] and ort["mean_foreground_iou"] >= 0.999  # the FP32 rule of icpd validate
    assert set(steps["latency"]["details"]["ms_per_episode"]) == {"ort cpu", "torch cpu"}
    assert doc["counts"] == {"pass": 5, "fail": 0, "skip": 5}
    table = (tmp_path / "selftest.txt").read_text()
    assert table.startswith("icpd selftest ") and "trt_sort             SKIP" in table and "FAILED" not in table
    assert f"wrote {tmp_path / 'selftest.json'} (attach it to bug reports)" in res.output
    assert steps["export"]["details"]["reused"] is False and not stale.exists()  # replaced, not kept beside

    # a second run reuses the export (same sources and versions): the CPU steps then take seconds
    again = run_selftest("cpu", tmp_path / "again", only=("export",))
    assert again.steps[0].details["reused"] is True
    assert again.steps[0].details["model_dir"] == steps["export"]["details"]["model_dir"]
    assert again.steps[0].details["summary"] == "tiny preset, seed 0, sort form, reused from the cache"


def test_cuda_asked_without_a_gpu_fails_the_environment_and_skips_gpu_steps(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    res = runner.invoke(app, ["selftest", "--device", "cuda", "--out", str(tmp_path),
                              "--only", "environment,kernel_cuda"])
    assert res.exit_code == 1
    doc = json.loads((tmp_path / "selftest.json").read_text())
    env, kernel = doc["steps"]
    assert env["status"] == "fail" and env["error"].startswith("RuntimeError: device cuda: torch ")
    assert "sees no CUDA device" in env["error"]
    assert env["fix"].startswith("install a CUDA build of torch that matches the driver")
    assert env["details"]["cuda_available"] is False and env["details"]["torch"] == torch.__version__
    assert (kernel["status"], kernel["reason"]) == ("skip", "torch sees no CUDA device")
    assert "FAILED environment (GPU, driver, CUDA, torch, TensorRT, ONNX Runtime, nvcc)" in res.output
    assert "  likely fix: install a CUDA build of torch" in res.output


def test_a_failed_step_names_the_error_and_fix_and_later_steps_go_on(tmp_path, monkeypatch):
    def broken_export(exports, form):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(backends.Exports, "get", broken_export)
    report = run_selftest("cpu", tmp_path, only=("export", "ort_vs_torch_cpu", "latency"))
    export, ort, latency = report.steps
    assert export.status == "fail" and export.error == "OSError: [Errno 28] No space left on device"
    assert export.fix.startswith("reinstall the torch extra")
    assert "broken_export" in "\n".join(export.details["traceback"])
    assert (ort.status, ort.reason) == ("skip", "needs the exported model (the export step failed)")
    assert (latency.status, latency.reason) == ("skip", "needs the exported model (the export step failed)")
    assert json.loads((tmp_path / "selftest.json").read_text())["passed"] is False


def test_bad_options_are_one_line_errors(tmp_path):
    res = runner.invoke(app, ["selftest", "--device", "gpu", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "error: --device 'gpu': choose auto, cpu, cuda or cuda:N" in res.output
    res = runner.invoke(app, ["selftest", "--device", "cpu", "--only", "kernels", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "error: --only kernels: choose from environment, rank_prior_cpu," in res.output


def test_as_a_user_types_it(tmp_path):
    res = subprocess.run([sys.executable, "-m", "icpd.cli", "selftest", "--device", "cpu", "--only",
                          "environment,rank_prior_cpu,trt_plugin", "--out", str(tmp_path / "st")],
                         check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "rank_prior_cpu       PASS" in res.stdout and "trt_plugin           SKIP" in res.stdout
    assert "selftest: environment pass" in res.stderr
    assert json.loads((tmp_path / "st" / "selftest.json").read_text())["counts"] == {"pass": 2, "fail": 0, "skip": 1}


def test_export_cache_names_and_prunes_by_the_forms_value(tmp_path):
    """Selftest passes RankPriorForm members inside; the cached dirs are named from the value
    (tiny-sort-<key>): a member written into the name (tiny-RankPriorForm.SORT-...) would never be pruned."""
    from icpd.config import RankPriorForm

    cache = tmp_path / "cache"
    keep, stale, other = (cache / n for n in ("tiny-sort-" + "a" * 16, "tiny-sort-" + "b" * 16,
                                                "tiny-plugin-" + "b" * 16))
    for d in (keep, stale, other):
        d.mkdir(parents=True)
    exports = backends.Exports(tmp_path / "work", cache)
    exports._prune(RankPriorForm.SORT, keep=keep)
    assert sorted(p.name for p in cache.iterdir()) == [other.name, keep.name]
    exports.dirs[RankPriorForm.SORT] = keep
    assert exports.exported(RankPriorForm.SORT) == keep
