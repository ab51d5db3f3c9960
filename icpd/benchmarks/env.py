"""Describe the machine a benchmark ran on, without importing anything heavy.

:func:`collect_environment` never raises: a field it cannot read is ``None``. Package versions
come from ``importlib.metadata`` (no import of torch or onnxruntime); the GPU from
``nvidia-smi`` and the Jetson power mode from ``nvpmodel``, each only when present and with a
short timeout.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from icpd.runtime.backends.registry import requirement

__all__ = ["ENV_VARS", "PACKAGES", "collect_environment"]

T = TypeVar("T")

ENV_VARS = (  # variables that change latency; recorded verbatim (None when unset)
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TORCH_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "CUDA_MODULE_LOADING",
    "NVIDIA_TF32_OVERRIDE",
    "PYTORCH_CUDA_ALLOC_CONF",
    "ORT_TENSORRT_FP16_ENABLE",
)

PACKAGES = {  # import name -> distribution names to try, first found wins
    # the backends' libraries: their distributions as the backend registry lists them
    **{module: requirement(module).distributions for module in ("torch", "onnxruntime", "tensorrt")},
    "numpy": ("numpy",),
    "icpd": ("icpd",),
}

SUBPROCESS_TIMEOUT_S = 5.0


def _safe(fn: Callable[[], T]) -> T | None:
    """Run a collector; any failure becomes None (the environment block must never fail)."""
    try:
        return fn()
    except Exception:  # noqa: BLE001 - by design: unknown fields become null
        return None


def _run(*cmd: str) -> str | None:
    """stdout of ``cmd`` if the program exists and succeeds within the timeout, else None."""
    if shutil.which(cmd[0]) is None:
        return None
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def _cpu_model() -> str | None:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        text = cpuinfo.read_text(errors="replace")
        # x86: "model name"; some ARM kernels: "Hardware" / "Processor"
        for key in ("model name", "Hardware", "Processor", "cpu model"):
            match = re.search(rf"^{key}\s*:\s*(.+)$", text, re.MULTILINE)
            if match:
                return match.group(1).strip()
    return platform.processor() or platform.machine() or None


# CPU features that decide ONNX Runtime's INT8 kernels: on x86 AVX2 without VNNI the u8 x s8 pair
# sums saturate at int16 (why INT8 exports use 7-bit weights) and INT8 gained 1.15x; with VNNI /
# AMX one instruction does the int32 dot product (2.08x measured, README "INT8 on CPU"); ARM dot
# product (asimddp) and i8mm play that part on Jetson-class cores. "AMD EPYC" alone does not say which.
INT8_CPU_FLAGS = ("avx2", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def _cpu_int8_flags(cpuinfo_text: str | None = None) -> list[str] | None:
    """Which of INT8_CPU_FLAGS the CPU has, from /proc/cpuinfo (or the text given); None: unknown."""
    if cpuinfo_text is None:
        cpuinfo = Path("/proc/cpuinfo")
        if not cpuinfo.exists():
            return None
        cpuinfo_text = cpuinfo.read_text(errors="replace")
    match = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", cpuinfo_text, re.MULTILINE)
    if match is None:
        return None
    have = set(match.group(1).split())
    return [flag for flag in INT8_CPU_FLAGS if flag in have]


def _usable_cores() -> int | None:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _ram_bytes() -> int | None:
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        match = re.search(r"^MemTotal:\s*(\d+)\s*kB", meminfo.read_text(), re.MULTILINE)
        if match:
            return int(match.group(1)) * 1024
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _cpu_governor() -> str | None:
    path = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    return path.read_text().strip() if path.exists() else None


def _package_version(import_name: str) -> str | None:
    if importlib.util.find_spec(import_name) is None:  # finds, does not import
        return None
    for dist in PACKAGES[import_name]:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _gpus() -> list[dict[str, str]] | None:
    out = _run("nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader")
    if not out:
        return None
    gpus = []
    for line in out.splitlines():
        name, _, driver = line.rpartition(",")
        gpus.append({"name": name.strip(), "driver": driver.strip()})
    return gpus


def _jetson_power_mode() -> str | None:
    out = _run("nvpmodel", "-q")
    if out:
        match = re.search(r"NV Power Mode:\s*(.+)", out)
        return match.group(1).strip() if match else out.splitlines()[0].strip()
    conf = Path("/etc/nvpmodel.conf")
    if conf.exists():  # the current mode needs nvpmodel; the file gives the boot default
        match = re.search(r"PM_CONFIG\s+DEFAULT\s*=\s*(\d+)", conf.read_text(errors="replace"))
        if match:
            return f"default mode {match.group(1)} (from {conf}; current mode unknown)"
    return None


def collect_environment() -> dict[str, Any]:
    """Describe this machine for a bench result's ``environment`` block. Never raises.

    Keys: ``cpu_model``, ``cpu_int8_flags`` (which of :data:`INT8_CPU_FLAGS` the CPU has; None
    where /proc/cpuinfo is missing), ``cpu_cores`` (logical), ``cpu_cores_usable`` (affinity),
    ``cpu_governor``, ``ram_bytes``, ``os``, ``python``, ``packages`` (name -> version or None),
    ``gpus`` (list of ``{"name", "driver"}`` or None), ``jetson_power_mode``, ``env``
    (variable -> value or None).
    """
    return {
        "cpu_model": _safe(_cpu_model),
        "cpu_int8_flags": _safe(_cpu_int8_flags),
        "cpu_cores": _safe(os.cpu_count),
        "cpu_cores_usable": _safe(_usable_cores),
        "cpu_governor": _safe(_cpu_governor),
        "ram_bytes": _safe(_ram_bytes),
        "os": _safe(platform.platform),
        "python": _safe(platform.python_version),
        "packages": {name: _safe(lambda n=name: _package_version(n)) for name in PACKAGES},
        "gpus": _safe(_gpus),
        "jetson_power_mode": _safe(_jetson_power_mode),
        "env": {name: os.environ.get(name) for name in ENV_VARS},
    }
