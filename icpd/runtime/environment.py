"""The running environment: what `icpd info` reports (versions, backends and devices, without
importing heavy modules) and what TensorRT engines are checked against (:func:`current_env`)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
from typing import TYPE_CHECKING

import icpd
from icpd.config import Backend
from icpd.runtime.backends import registry

if TYPE_CHECKING:
    from icpd.artifacts.engine_sidecar import EngineEnv


def describe() -> dict[str, str]:
    """Library versions, the backends that can run here (with their devices) and the devices.

    Backends and their libraries come from :mod:`icpd.runtime.backends.registry`; torch is imported
    only when it is installed (for its version and CUDA devices), TensorRT never.
    """
    info: dict[str, str] = {
        "icpd": icpd.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    # the torch extra (export, training, the torch backend)
    has_torch = importlib.util.find_spec("torch") is not None
    if not has_torch:
        # no square brackets: `icpd info` prints this in a rich table, whose markup would eat "[torch]"
        # the library's words, not one command's flag (`icpd info` has no --backend)
        info["torch"] = ("not installed: a runtime-only install (icpd's torch extra adds export, training and "
                         "the torch backend)")
    for req in dict.fromkeys(r for b in registry.BACKENDS.values() for r in b.requires):  # each library once
        if req.module == "torch" and not has_torch:
            continue
        found = [(d, v) for d in req.distributions if (v := _version(d))]
        info[req.distributions[0]] = "; ".join(v if d == req.distributions[0] else f"{v} ({d})"
                                               for d, v in found) or "not installed"
    if has_torch:
        info["onnx"] = _version("onnx") or "not installed"  # the exporter's
    lines = []
    for name in registry.names():
        devices = registry.usable_devices(name)
        lines.append(f"{name} ({', '.join(devices)})" if devices else
                     f"{name}: {'no device here' if registry.installed(name) else 'not installed'}")
    info["backends"] = "; ".join(lines)
    if registry.installed(Backend.ORT):
        import onnxruntime as ort

        info["ort providers"] = ", ".join(ort.get_available_providers())
    info["devices"] = _devices() if has_torch else f"cpu ({os.cpu_count()} cores)"
    return info


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _devices() -> str:
    import torch

    if torch.cuda.is_available():
        return ", ".join(f"cuda:{i} {torch.cuda.get_device_name(i)}"
                         for i in range(torch.cuda.device_count()))
    return f"cpu ({torch.get_num_threads()} threads); no CUDA device"


def current_env(device: int = 0) -> EngineEnv:
    """The running TensorRT, GPU and plugin sources (needs TensorRT and a CUDA device)."""
    import torch

    from icpd.artifacts.engine_sidecar import EngineEnv, EngineMismatchError, plugin_hash
    from icpd.kernels.tensorrt import import_tensorrt

    trt = import_tensorrt()
    if not torch.cuda.is_available():
        raise EngineMismatchError("TensorRT engines need a CUDA GPU and torch sees none here")
    major, minor = torch.cuda.get_device_capability(device)
    return EngineEnv(str(trt.__version__), torch.cuda.get_device_name(device), f"{major}.{minor}",
                     plugin_hash())
