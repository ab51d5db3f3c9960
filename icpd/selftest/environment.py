"""Self-test step 1: what this machine has (GPU, driver, CUDA, torch, TensorRT, ONNX Runtime, nvcc).

Every probe is guarded: a missing tool is recorded as absent (with why), never an exception. The
step fails only when ``--device cuda`` was asked for and torch sees no CUDA device.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from typing import Any


def _run(cmd: list[str]) -> str:
    """A tool's first output line, or why it could not run (never reads stdin; 10 s at most)."""
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL,
                             check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unavailable ({type(err).__name__}: {err})"
    text = (res.stdout or res.stderr).strip()
    if res.returncode == 0 and text:
        return text.splitlines()[0]
    return f"unavailable (exit {res.returncode}: {text[:200]})"


def _tensorrt() -> str:
    from icpd.runtime.backends.registry import missing, requirement

    if requirement("tensorrt") in missing("trt"):  # the registry's find_spec: nothing imported
        return "not installed"
    try:
        import tensorrt

        return str(tensorrt.__version__)
    except Exception as err:  # noqa: BLE001  (the bindings' import can fail in many ways: record it)
        return f"not importable ({type(err).__name__}: {err})"


def _nvcc() -> str:
    from icpd.kernels import build

    try:
        major, minor = build.nvcc_version()
    except (build.NvccNotFoundError, build.KernelBuildError) as err:
        return f"not found ({str(err).splitlines()[0][:160]})"
    return f"{major}.{minor} ({build.find_nvcc()})"


def environment(device: str, env: dict[str, Any]) -> None:
    """Versions and hardware into ``env`` (the step's details); raises when ``device`` is CUDA and torch
    sees no GPU (the details are kept)."""
    import onnxruntime
    import torch

    import icpd
    from icpd.runtime.backends.registry import names as backend_names
    from icpd.runtime.backends.registry import usable_devices

    env.update({
        "icpd": icpd.__version__, "python": sys.version.split()[0], "platform": platform.platform(),
        "machine": platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
        "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
        "onnxruntime": onnxruntime.__version__, "ort_providers": onnxruntime.get_available_providers(),
        "tensorrt": _tensorrt(), "nvcc": _nvcc(),
        # the backends (the registry's list) and the devices each can use here
        "backends": {name: list(usable_devices(name)) for name in backend_names()},
    })
    if torch.cuda.is_available():
        index = torch.device(device).index or 0 if device.startswith("cuda") else 0
        props = torch.cuda.get_device_properties(index)
        env.update(gpu=props.name, compute_capability=f"{props.major}.{props.minor}",
                   gpu_memory_gib=round(props.total_memory / 2**30, 1), gpus=torch.cuda.device_count(),
                   driver=_run(["nvidia-smi", f"--id={index}", "--query-gpu=driver_version",
                                "--format=csv,noheader"]))
    gpu = env.get("gpu", "no GPU")
    env["summary"] = (f"{gpu}{' cc ' + env['compute_capability'] if 'compute_capability' in env else ''}, "
                      f"torch {torch.__version__}, TensorRT {env['tensorrt']}, ORT {onnxruntime.__version__}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device}: torch {torch.__version__} sees no CUDA device (torch built for "
                           f"CUDA {torch.version.cuda}; nvidia-smi: {_run(['nvidia-smi', '-L'])})")
