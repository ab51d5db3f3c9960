"""What a benchmark times: the backends (as results name them) and the model directory under
test (its identity and where its weights came from). Shared by :mod:`icpd.benchmarks.latency`
and :mod:`icpd.benchmarks.precision`, which import it and not each other."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from icpd.benchmarks.report import RANDOM_WEIGHTS_NOTE
from icpd.errors import ParamError, arg
from icpd.runtime.backends import registry

__all__ = ["BACKENDS", "BackendSpec", "ModelInfo", "available_backends", "default_cache_dir", "model_info",
           "parse_backends"]


@dataclass(frozen=True)
class BackendSpec:
    """A backend as results name it (``ort-cpu``) and as Predictor.load takes it."""

    name: str  # label in results, e.g. "ort-cpu"
    backend: str  # Predictor.load backend: "ort", "torch" or "trt"
    device: str  # "cpu" or "cuda"


def _label(backend: str, device: str, devices: tuple[str, ...]) -> str:
    """``ort-cpu``; a backend with one device kind is its name alone (``trt``)."""
    return backend if len(devices) == 1 else f"{backend}-{device}"


# Every (backend, device) the registry declares, CPU ones first:
# torch-cpu, ort-cpu, torch-cuda, ort-cuda, trt.
BACKENDS: dict[str, BackendSpec] = {
    spec.name: spec
    for spec in (BackendSpec(_label(b.name, d, b.devices), b.name, d)
                 for d in ("cpu", "cuda") for b in registry.BACKENDS.values() if d in b.devices)
}


def available_backends() -> list[str]:
    """The labels of :data:`BACKENDS` that can run here (:func:`registry.usable_devices`: installed, and
    for CUDA a GPU its library sees)."""
    usable = {name: registry.usable_devices(name) for name in registry.names()}
    return [label for label, spec in BACKENDS.items() if spec.device in usable[spec.backend]]


def parse_backends(names: str | list[str] | tuple[str, ...] | None) -> list[BackendSpec]:
    """``"auto"``/None: every available backend; else comma-separated labels or backend names and
    aliases (``ort`` == ``onnxruntime`` == ``ort-cpu``: a name alone is its first device)."""
    if names is None or names == "auto" or names == ["auto"]:
        names = available_backends()
    elif isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    specs = []
    for name in names:
        if name not in BACKENDS:
            try:
                record = registry.info(name)
            except ValueError:
                raise ParamError(f"{arg('backends')}: unknown backend {name!r}; choose from auto, "
                                 f"{', '.join(BACKENDS)} or a backend: {registry.choices()}") from None
            name = _label(record.name, record.devices[0], record.devices)
        specs.append(BACKENDS[name])
    if not specs:
        raise ParamError(f"{arg('backends')}: no backend given; use auto or e.g. ort-cpu,torch-cpu")
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
    # an INT8 dir's blocks left in FP32 (mixed precision), in the order chosen
    kept_fp32: tuple[str, ...] = ()


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
