"""The running environment: what `icpd info` reports (versions, backends and devices, without
importing heavy modules) and what TensorRT engines are checked against (:func:`current_env`)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
from typing import TYPE_CHECKING

import icpd

if TYPE_CHECKING:
    from icpd.artifacts.engine_sidecar import EngineEnv


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe() -> dict[str, str]:
    """Library versions, available backends and devices."""
    info: dict[str, str] = {
        "icpd": icpd.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if importlib.util.find_spec("torch") is None:  # a runtime-only install: exported models on ONNX Runtime
        return _describe_without_torch(info)
    import torch

    info["torch"] = torch.__version__
    for dist in ("torchvision", "open_clip_torch", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt"):
        info[dist] = _version(dist) or "not installed"
    backends = ["torch"]
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime as ort

        backends.append(f"ort ({', '.join(ort.get_available_providers())})")
    if importlib.util.find_spec("tensorrt") is not None:
        backends.append("trt")
    info["backends"] = "; ".join(backends)
    if torch.cuda.is_available():
        info["devices"] = ", ".join(
            f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())
        )
    else:
        info["devices"] = f"cpu ({torch.get_num_threads()} threads); no CUDA device"
    return info


def _describe_without_torch(info: dict[str, str]) -> dict[str, str]:
    import os

    # no square brackets: `icpd info` prints this in a rich table, whose markup would eat "[torch]"
    info["torch"] = "not installed: a runtime-only install (icpd's torch extra adds export, training, --backend torch)"
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        info[dist] = _version(dist) or "not installed"
    backends = []
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime as ort

        backends.append(f"ort ({', '.join(ort.get_available_providers())})")
    info["backends"] = "; ".join(backends) or "none: pip install onnxruntime"
    info["devices"] = f"cpu ({os.cpu_count()} cores)"
    return info


def current_env(device: int = 0) -> EngineEnv:
    """The running TensorRT, GPU and plugin sources (needs TensorRT and a CUDA device)."""
    import torch

    from icpd.artifacts.engine_sidecar import EngineEnv, EngineMismatchError, plugin_hash
    from icpd.kernels.tensorrt import import_tensorrt

    trt = import_tensorrt()
    if not torch.cuda.is_available():
        raise EngineMismatchError("TensorRT engines need a CUDA GPU and torch sees none here")
    major, minor = torch.cuda.get_device_capability(device)
    return EngineEnv(str(trt.__version__), torch.cuda.get_device_name(device), f"{major}.{minor}", plugin_hash())
