"""The self-test's steps, in order, run one by one past failures (see :mod:`icpd.selftest`)."""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icpd.config import RankPriorForm
from icpd.errors import ParamError, arg
from icpd.selftest import backends, kernels
from icpd.selftest.environment import environment
from icpd.selftest.report import SelftestReport, Skip, StepResult

REPORT_NAME = "selftest.json"
TABLE_NAME = "selftest.txt"
BUG_REPORT = "if it persists, open an issue and attach selftest.json"


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    run: Callable[[dict[str, Any]], Any]  # fills (or returns) the step's details; raises Skip or an error
    fix: str  # the likely fix when it fails


def _steps(device: str, exports: backends.Exports, kernel_cache: Path,
           plugin_library: str | None) -> list[Step]:
    def trt(form: RankPriorForm, precision: str) -> Callable[[dict[str, Any]], Any]:
        return lambda d: backends.trt_engines(exports, device, form, precision, d, plugin_library)

    return [
        Step("environment", "GPU, driver, CUDA, torch, TensorRT, ONNX Runtime, nvcc",
             lambda d: environment(device, d),
             "install a CUDA build of torch that matches the driver (pip install torch --index-url "
             "https://download.pytorch.org/whl/cuXXX) and check `nvidia-smi`; or run on the CPU "
             "(`icpd selftest --device cpu`)"),
        Step("rank_prior_cpu", "rank prior CPU reference: k = 0, k = all, ties, 1024 x 1024 vs full sort",
             lambda d: kernels.rank_prior_cpu(),
             f"the PyTorch in use changed torch.topk/sort semantics; {BUG_REPORT}"),
        Step("kernel_coverage", "the CUDA kernel's cubins / PTX cover this GPU",
             lambda d: kernels.kernel_coverage(device, kernel_cache),
             "nvcc could not build icpd/kernels/ndcg_prior.cu for this GPU: use a CUDA toolkit that targets "
             "it (CUDA >= 12.8 for sm_100/sm_120) and a host compiler it supports; set CUDA_HOME"),
        Step("kernel_cuda", "CUDA kernel vs CPU reference: paper-sized levels, ties, k = 0, k = all, FP16",
             lambda d: kernels.kernel_cuda(device, kernel_cache),
             "the kernel disagrees with the reference on this GPU; the torch backend then falls back to "
             f"PyTorch only where the kernel cannot run, so {BUG_REPORT}"),
        Step("export", "export the seeded tiny model (sort form) to ONNX (reused while sources and versions "
                       "match)",
             lambda d: backends.export_step(exports, d),
             "reinstall the torch extra (pip install 'icpd[torch]'): torch, onnx and onnxscript must be the "
             "versions pyproject.toml allows"),
        Step("ort_vs_torch_cpu", "ONNX Runtime CPU vs PyTorch CPU FP32 (icpd validate's pass rule)",
             lambda d: backends.ort_vs_torch_cpu(exports, d),
             f"ONNX Runtime and PyTorch disagree; {BUG_REPORT}"),
        Step("torch_cuda", "PyTorch on CUDA vs PyTorch CPU FP32 (icpd validate's pass rule)",
             lambda d: backends.torch_cuda(exports, device, d),
             f"PyTorch on this GPU disagrees with the CPU: update the driver, check no TF32 override "
             f"(TORCH_ALLOW_TF32_CUBLAS_OVERRIDE); {BUG_REPORT}"),
        Step("trt_sort", "TensorRT FP16 engines from the sort form vs ONNX Runtime CPU",
             trt(RankPriorForm.SORT, "fp16"),
             "see the error; `icpd build --precision fp32` tells FP16 problems from others; " + BUG_REPORT),
        Step("trt_plugin", "TensorRT FP32 engines from the plugin form vs PyTorch CPU FP32",
             trt(RankPriorForm.PLUGIN, "fp32"),
             "see the error; on TensorRT < 10.9 give the C++ plugin (`icpd selftest --plugin-library`); "
             + BUG_REPORT),
        Step("latency", "median latency of one episode per backend",
             lambda d: backends.latency(exports, device, d), BUG_REPORT),
    ]


def _run_step(step: Step) -> StepResult:
    result = StepResult(step.name, step.title)
    t0 = time.perf_counter()
    try:
        returned = step.run(result.details)
        if isinstance(returned, dict):
            result.details.update(returned)
        result.status = "pass"
    except Skip as why:
        result.status, result.reason = "skip", str(why)
    except Exception as err:  # noqa: BLE001  (a self-test goes on past any failure and reports it)
        result.status, result.fix = "fail", step.fix
        result.error = f"{type(err).__name__}: {err}"
        if not isinstance(err, AssertionError):  # an unexpected error: its traceback helps a bug report
            result.details["traceback"] = traceback.format_exc(limit=-8).splitlines()[-24:]
    result.seconds = round(time.perf_counter() - t0, 2)
    return result


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cpu`` and ``cuda[:N]`` as given."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device != "cpu" and not (device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        raise ParamError(f"{arg('device', repr(device))}: choose auto, cpu, cuda or cuda:N")
    return device


def run_selftest(device: str = "auto", out_dir: str | os.PathLike[str] | None = None,
                 plugin_library: str | os.PathLike[str] | None = None,
                 progress: Callable[[StepResult], None] | None = None, only: tuple[str, ...] = (),
                 cache: bool = True) -> SelftestReport:
    """Run every step (or those named in ``only``); write ``out_dir/selftest.json`` after each.

    Engines go to a temporary folder that is removed at the end. The CUDA kernel is built into
    the kernel cache and the exported model dirs into ``selftest/`` of icpd's cache
    (``$ICPD_CACHE_DIR``, :func:`icpd.config.cache_root`); later runs reuse both while the sources
    and versions they were made from are the same. ``cache=False`` exports into the temporary folder.

    Raises:
        ParamError (a ValueError): a bad ``device`` or ``only``.
    """
    import icpd
    from icpd.config import cache_root
    from icpd.kernels.cuda_op import default_cache_dir

    device = resolve_device(device)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    report = SelftestReport(device=device, icpd_version=icpd.__version__, started_utc=started)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="icpd-selftest-"))
    lib = str(Path(plugin_library).resolve()) if plugin_library else None
    exports = backends.Exports(work, cache_root() / "selftest" if cache else None)
    steps = _steps(device, exports, default_cache_dir(), lib)
    unknown = sorted(set(only) - {s.name for s in steps})
    if unknown:
        raise ParamError(f"{arg('only', ','.join(unknown))}: choose from {', '.join(s.name for s in steps)}")
    t0 = time.perf_counter()
    try:
        for step in steps:
            if only and step.name not in only:
                continue
            result = _run_step(step)
            report.steps.append(result)
            report.seconds = time.perf_counter() - t0
            if out is not None:
                report.write(out / REPORT_NAME)
            if progress is not None:
                progress(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report
