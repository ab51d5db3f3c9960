"""``ServeSettings``: everything one ``icpd serve`` process (or one Ray Serve replica) is started with.

Frozen and picklable (plain values and paths): the same object configures the single-process server
(:func:`icpd.apps.serve.app.create_app`) and each replica of the Ray Serve deployment. Checked once,
when made (:class:`~icpd.errors.ParamError` naming the field: ``workers=0`` from Python, ``--workers 0``
from the command line).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from icpd.errors import ParamError, arg
from icpd.runtime.backends.registry import resolve as resolve_backend

__all__ = ["LOOPBACK_HOSTS", "SAFE_NAME", "ServeSettings", "is_loopback"]

SAFE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")  # support names: nothing a path or a shell could misread
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
MAX_WORKERS = 64  # worker threads; each holds one scene in memory


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    return host in LOOPBACK_HOSTS or host.startswith("127.")


@dataclass(frozen=True)
class ServeSettings:
    """How to run the service. Defaults: a loopback server on port 8080, ONNX Runtime on the CPU."""

    model: Path  # exported model directory (`icpd export`)
    supports: tuple[Path, ...] = ()  # support caches loaded at start (`icpd cache-support`), one class each
    backend: str = "ort"  # torch, ort or trt
    device: str = "cpu"  # cpu, cuda or cuda:N
    engine_dir: Path | None = None  # TensorRT engines (`icpd build`), with backend trt
    class_embeddings: Path | None = None  # class embeddings (.safetensors) for supports uploaded as images
    threads: int | None = None  # CPU threads of the backend (None: its own choice)
    workers: int = 1  # requests segmented at once (worker threads over the one loaded model)
    queue: int = 8  # requests waiting for a worker; one more is answered 503 with Retry-After
    deadline: float = 60.0  # seconds a request may take, waiting included; past it: 504
    max_body_mb: float = 64.0  # largest request body in MiB (413 above)
    max_pixels: int = 64_000_000  # largest image in pixels, read from its header before decoding (413 above)
    tile: int | None = None  # tile side in scene pixels (None: the model input, as `icpd infer`)
    overlap: int = 32  # pixels shared by neighbouring tiles, as `icpd infer`
    batch: int = 8  # tiles per predictor call, as `icpd infer`
    token: str | None = field(default=None, repr=False)  # bearer token every endpoint but health needs (None: open)
    host: str = "127.0.0.1"  # address to bind
    port: int = 8080  # TCP port to bind
    model_name: str = "icpd"  # the model's name in the Open Inference Protocol (/v2/models/{name})
    drain: float = 30.0  # seconds a stopping server waits for requests in flight

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", Path(self.model))
        object.__setattr__(self, "supports", tuple(Path(s) for s in self.supports))
        for name in ("engine_dir", "class_embeddings"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        # the backend registry's names and aliases (onnxruntime, tensorrt), and its one message
        object.__setattr__(self, "backend", resolve_backend(self.backend).value)
        _at_least("workers", self.workers, 1, MAX_WORKERS)
        if self.workers > 1 and self.backend != "ort":
            # ONNX Runtime sessions run concurrent calls; a TensorRT execution context does not, and
            # torch's thread count is process-wide
            raise ParamError(f"{arg('workers', self.workers)}: only {arg('backend', 'ort')} segments requests "
                             f"at once; with {arg('backend', self.backend)} use {arg('workers', 1)} "
                             "(Ray Serve replicas scale it)")
        _at_least("queue", self.queue, 0, 100_000)
        _at_least("max_pixels", self.max_pixels, 1, None)
        _at_least("overlap", self.overlap, 0, None)
        _at_least("batch", self.batch, 1, None)
        _at_least("port", self.port, 0, 65535)
        if self.tile is not None:
            _at_least("tile", self.tile, 1, None)
            if self.overlap >= self.tile:
                raise ParamError(f"{arg('overlap', self.overlap)}: must be below the tile ({arg('tile', self.tile)}); "
                                 f"e.g. {arg('overlap', self.tile // 4)}")
        for name in ("deadline", "max_body_mb", "drain"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ParamError(f"{arg(name, value)}: must be a finite number above 0")
        if self.token is not None and (not self.token or any(c.isspace() or not c.isprintable() for c in self.token)):
            raise ParamError(f"{arg('token')}: must be non-empty, without spaces or control characters (it travels "
                             "in an Authorization: Bearer header)")
        if not SAFE_NAME.fullmatch(self.model_name):
            raise ParamError(f"{arg('model_name', repr(self.model_name))}: use 1 to 64 of A-Z a-z 0-9 . _ -")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * (1 << 20))


def _at_least(name: str, value: object, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParamError(f"{arg(name, repr(value))}: must be a whole number")
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ParamError(f"{arg(name, value)}: must be {bound}")
