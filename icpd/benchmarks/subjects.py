"""What a benchmark times: the backends (as results name them) and the model directory under
test (its identity and where its weights came from). Shared by :mod:`icpd.benchmarks.latency`
and :mod:`icpd.benchmarks.precision`, which import it and not each other."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from icpd.benchmarks.report import RANDOM_WEIGHTS_NOTE

__all__ = ["BACKENDS", "BackendSpec", "ModelInfo", "available_backends", "default_cache_dir", "model_info",
           "parse_backends"]


@dataclass(frozen=True)
class BackendSpec:
    """A backend as results name it (``ort-cpu``) and as Predictor.load takes it."""

    name: str  # label in results, e.g. "ort-cpu"
    backend: str  # Predictor.load backend: "ort", "torch" or "trt"
    device: str  # "cpu" or "cuda"


BACKENDS = {
    "ort-cpu": BackendSpec("ort-cpu", "ort", "cpu"),
    "torch-cpu": BackendSpec("torch-cpu", "torch", "cpu"),
    "ort-cuda": BackendSpec("ort-cuda", "ort", "cuda"),
    "torch-cuda": BackendSpec("torch-cuda", "torch", "cuda"),
    "trt": BackendSpec("trt", "trt", "cuda"),
}
_ALIASES = {"ort": "ort-cpu", "onnxruntime": "ort-cpu", "torch": "torch-cpu", "tensorrt": "trt"}


def available_backends() -> list[str]:
    """Backends that can run here: CPU ones always, CUDA ones only with a device and the libraries."""
    import importlib.util

    has_ort = importlib.util.find_spec("onnxruntime") is not None
    has_torch = importlib.util.find_spec("torch") is not None  # absent in a runtime-only install
    names = ["ort-cpu"] if has_ort else []
    if has_torch:
        names.append("torch-cpu")
    if has_ort:
        import onnxruntime

        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            names.append("ort-cuda")
    if not has_torch:
        return names
    import torch

    if torch.cuda.is_available():
        names.append("torch-cuda")
        if importlib.util.find_spec("tensorrt") and importlib.util.find_spec("icpd.runtime.backends.trt"):
            names.append("trt")
    return names


def parse_backends(names: str | list[str] | tuple[str, ...] | None) -> list[BackendSpec]:
    """``"auto"``/None: every available backend; else comma-separated names (``ort`` == ``ort-cpu``)."""
    if names is None or names == "auto" or names == ["auto"]:
        names = available_backends()
    elif isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    specs = []
    for name in names:
        key = _ALIASES.get(name, name)
        if key not in BACKENDS:
            raise ValueError(f"--backends: unknown backend {name!r}; choose from auto, {', '.join(BACKENDS)}")
        specs.append(BACKENDS[key])
    if not specs:
        raise ValueError("--backends: no backend given; use auto or e.g. ort-cpu,torch-cpu")
    return specs


# -- the model under test -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelInfo:
    """The model directory a run uses and where its weights came from."""

    path: Path
    preset: str
    fingerprint: str
    random_weights: bool
    weights: str  # "random weights: latency only", a checkpoint name, or the export's source
    precision: str  # e.g. "fp32", from model.json
    exported_s: float | None = None  # export time when this run exported, None when reused
    kept_fp32: tuple[str, ...] = ()  # an INT8 dir's blocks left in FP32 (mixed precision), in the order chosen


def kept_fp32_blocks(meta: dict) -> tuple[str, ...]:
    """The blocks an INT8 model dir keeps in FP32 (``model.json`` ``int8.mixed_precision.fp32_blocks``,
    :mod:`icpd.export.quantize`); () for a full INT8 dir or another precision."""
    record = (meta.get("int8") or {}).get("mixed_precision") or {}
    return tuple(str(b["block"]) for b in record.get("fp32_blocks") or ())


def default_cache_dir() -> Path:
    """``icpd.config.cache_root() / "bench"`` (``~/.cache/icpd/bench`` by default)."""
    from icpd.config import cache_root

    return cache_root() / "bench"


def model_info(path: Path, random_weights: bool, exported_s: float | None = None) -> ModelInfo:
    """The ModelInfo of the model dir at ``path`` (``random_weights``: the caller knows they are)."""
    from icpd.artifacts.model_dir import ModelDir

    md = ModelDir.open(path)
    source = str(md.meta.get("source") or "")
    random_weights = random_weights or source == RANDOM_WEIGHTS_NOTE
    return ModelInfo(path, md.preset.name, md.fingerprint, random_weights,
                     RANDOM_WEIGHTS_NOTE if random_weights else (source or "unknown"),
                     str(md.meta.get("precision", "fp32")), exported_s, kept_fp32_blocks(md.meta))
