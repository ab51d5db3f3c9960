"""The backends a model dir runs on, in one table: names, spellings, what each needs, where it runs.

As mmdeploy's backend manager does, one place says which backends exist (:data:`BACKENDS`, in the
order of :class:`icpd.config.Backend`), how a user may spell them (:func:`resolve`: the name or an
alias, one error message), the libraries each needs and whether they are installed
(:func:`installed`, :func:`missing`: ``importlib.util.find_spec`` only, so asking never imports
torch or TensorRT), the devices each can use (:attr:`BackendInfo.devices`, and
:func:`usable_devices` for this machine: that one does import the libraries it asks) and their
versions (:func:`versions`, from the installed distributions' metadata). Every other module
(Predictor.load, the commands, benchmarks, selftest, evaluation, ``icpd info``) asks here.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass

from icpd.config import Backend
from icpd.errors import ParamError, arg

__all__ = ["BACKENDS", "BackendInfo", "Requirement", "choices", "info", "installed", "missing", "names",
           "requirement", "resolve", "usable_devices", "versions"]


@dataclass(frozen=True)
class Requirement:
    """A library a backend imports, and the pip distributions that provide it."""

    module: str  # the import name; installed when importlib.util.find_spec finds it
    distributions: tuple[str, ...]  # pip distributions that install the module (any one of them)


@dataclass(frozen=True)
class BackendInfo:
    """One backend: how it is named and spelled, what it needs, where it can run."""

    backend: Backend  # the name (``--backend``, ``Predictor.load(backend=...)``)
    aliases: tuple[str, ...]  # other spellings resolve() accepts: the library's own name
    requires: tuple[Requirement, ...]  # every one must be installed
    devices: tuple[str, ...]  # device kinds it can use: "cpu", "cuda" (cuda:N is a cuda device)

    @property
    def name(self) -> str:
        return self.backend.value


_TORCH = Requirement("torch", ("torch",))
_ONNXRUNTIME = Requirement("onnxruntime", ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml",
                                           "onnxruntime-openvino"))
_TENSORRT = Requirement("tensorrt", ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11",
                                     "tensorrt-cu13-bindings", "tensorrt-cu12-bindings"))

BACKENDS: dict[Backend, BackendInfo] = {
    b.backend: b
    for b in (
        # PyTorch eager on the model dir's weights: the network is built from the preset (torchvision
        # ResNet/VGG, open_clip's CLIP tower), hence the torch extra.
        BackendInfo(Backend.TORCH, (), (_TORCH, Requirement("torchvision", ("torchvision",)),
                                        Requirement("open_clip", ("open_clip_torch",))),
                    ("cpu", "cuda")),
        # ONNX Runtime on the exported graphs; CUDA with the onnxruntime-gpu distribution.
        BackendInfo(Backend.ORT, ("onnxruntime",), (_ONNXRUNTIME,), ("cpu", "cuda")),
        # TensorRT engines from `icpd build`; torch holds their CUDA buffers and streams.
        BackendInfo(Backend.TRT, ("tensorrt",), (_TENSORRT, _TORCH), ("cuda",)),
    )
}
_SPELLINGS = {**{b.name: b.backend for b in BACKENDS.values()},
              **{alias: b.backend for b in BACKENDS.values() for alias in b.aliases}}


def names() -> tuple[str, ...]:
    """``("torch", "ort", "trt")``: the backends' names, in the registry's order."""
    return tuple(b.name for b in BACKENDS.values())


def choices() -> str:
    """``"torch, ort, trt (onnxruntime is ort, tensorrt is trt)"``: the valid spellings, for messages."""
    aliases = ", ".join(f"{a} is {b.name}" for b in BACKENDS.values() for a in b.aliases)
    return ", ".join(names()) + (f" ({aliases})" if aliases else "")


def resolve(name: str | Backend) -> Backend:
    """A backend's name or alias -> the :class:`~icpd.config.Backend` (exact spelling).

    Raises:
        ParamError: any other value, about the parameter ``backend`` (the command line names its flag):
            ``backend='tpu': choose one of torch, ort, trt (...)``.
    """
    if isinstance(name, Backend):
        return name
    if isinstance(name, str) and name in _SPELLINGS:
        return _SPELLINGS[name]
    raise ParamError(f"{arg('backend', repr(name))}: choose one of {choices()}")


def info(name: str | Backend) -> BackendInfo:
    """The registry's record of ``name`` (any spelling :func:`resolve` takes)."""
    return BACKENDS[resolve(name)]


def missing(name: str | Backend) -> list[Requirement]:
    """The requirements of ``name`` that ``importlib.util.find_spec`` does not find (nothing is imported)."""
    return [r for r in info(name).requires if importlib.util.find_spec(r.module) is None]


def installed(name: str | Backend) -> bool:
    """Whether every library ``name`` needs is installed (found by ``find_spec``; none is imported)."""
    return not missing(name)


def requirement(module: str) -> Requirement:
    """The requirement of any backend on ``module`` (e.g. ``"onnxruntime"``: its distributions)."""
    found = {r.module: r for b in BACKENDS.values() for r in b.requires}
    if module not in found:
        raise KeyError(f"no backend requires {module!r}; the requirements are {sorted(found)}")
    return found[module]


def versions(name: str | Backend) -> dict[str, str]:
    """``{distribution: version}`` of the installed distributions behind ``name``'s requirements
    (package metadata only: nothing is imported); a requirement with none installed is absent."""
    found: dict[str, str] = {}
    for req in info(name).requires:
        for dist in req.distributions:
            try:
                found[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
    return found


def usable_devices(name: str | Backend) -> tuple[str, ...]:
    """The device kinds ``name`` can run on here: none when it is not installed; "cpu" when it runs
    there; "cuda" when its library sees a GPU (ONNX Runtime's CUDAExecutionProvider, torch's CUDA).

    Unlike :func:`installed`, this imports the libraries it asks (onnxruntime, torch; never tensorrt).
    """
    record = info(name)
    if not installed(record.backend):
        return ()
    found = ["cpu"] if "cpu" in record.devices else []
    if "cuda" in record.devices and _sees_cuda(record.backend):
        found.append("cuda")
    return tuple(found)


def _sees_cuda(backend: Backend) -> bool:
    if backend is Backend.ORT:
        import onnxruntime

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    import torch  # torch's CUDA: the torch backend's device, and TensorRT's buffers and streams

    return bool(torch.cuda.is_available())
