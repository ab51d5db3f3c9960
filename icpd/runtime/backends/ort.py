"""ONNX Runtime backend: preprocess / encoder / matcher sessions driven through IOBinding.

Images and features are ``OrtValue``s in ONNX Runtime's own memory on the session's device:
the preprocess output is bound straight to the encoder's input, the encoder's outputs straight
to the matcher's query inputs, for every class. A support handle is the class's support inputs
as ``OrtValue``s on that device, made once in ``load_support`` (on the CPU they wrap the support
set's arrays without a copy). Only the matcher's requested outputs come back as numpy arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from icpd.artifacts.signature import MATCHER_OUTPUTS, MatcherSignature
from icpd.export.ort_session import ort_session, providers_for, share_thread_pool  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from icpd.artifacts.support_cache import SupportSet


class OrtBackend:
    """See :class:`~icpd.runtime.backends.protocol.RuntimeBackend`; the form is ``OrtValue``."""

    name = "ort"

    def __init__(self, files: dict[str, Path], device: str = "cpu", threads: int | None = None,
                 plugin: bool = False, *, signature: MatcherSignature) -> None:
        self.device = device
        self.pre = ort_session(files["preprocess"], device, threads)
        self.enc = ort_session(files["encoder"], device, threads)
        # plugin: NdcgPrior nodes (the CPU kernel of onnxruntime-extensions)
        self.mat = ort_session(files["matcher"], device, threads, custom_ops=plugin)
        self.signature = signature
        graph_inputs = [i.name for i in self.mat.get_inputs()]
        if graph_inputs != signature.inputs:
            raise ValueError(f"{files['matcher']}: inputs {graph_inputs[:2]}..{graph_inputs[-1:]} do not "
                             f"match this icpd's matcher signature ({len(signature.inputs)} inputs); re-run "
                             "`icpd export`")
        self.matcher_outputs = [o.name for o in self.mat.get_outputs()]
        if self.matcher_outputs != list(MATCHER_OUTPUTS)[: len(self.matcher_outputs)]:
            raise ValueError(f"{files['matcher']}: outputs {self.matcher_outputs}; "
                             f"expected {list(MATCHER_OUTPUTS)}")
        self.encoder_outputs = [o.name for o in self.enc.get_outputs()]
        # where bound outputs and uploaded support tensors live: the session's device
        index = int(device.split(":")[1]) if ":" in device else 0
        self._place = ("cuda", index) if device.startswith("cuda") else ("cpu", 0)

    def _value(self, a: np.ndarray) -> Any:
        """A host array -> an OrtValue on the session's device (CPU: wraps the array, no copy)."""
        from onnxruntime import OrtValue

        return OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a), *self._place)

    def _bind(self, binding: Any, name: str, x: Any) -> None:
        if isinstance(x, np.ndarray):
            binding.bind_cpu_input(name, np.ascontiguousarray(x))
        else:
            binding.bind_ortvalue_input(name, x)

    # -- backend interface ---------------------------------------------------------------------
    def preprocess(self, pixels: Sequence[np.ndarray]) -> Any:
        parts = []
        for p in pixels:
            io = self.pre.io_binding()
            io.bind_cpu_input("pixels", np.ascontiguousarray(p))
            io.bind_output("images", *self._place)
            self.pre.run_with_iobinding(io)
            parts.append(io.get_outputs()[0])
        if len(parts) == 1:
            return parts[0]
        return self._value(np.concatenate([v.numpy() for v in parts]))  # images of several sizes: one batch

    def encode(self, images: Any) -> list[Any]:
        io = self.enc.io_binding()
        self._bind(io, "images", images)
        for name in self.encoder_outputs:
            io.bind_output(name, *self._place)
        self.enc.run_with_iobinding(io)
        return list(io.get_outputs())

    def load_support(self, support: SupportSet) -> list[tuple[str, Any]]:
        """(name, OrtValue) per support input, on the session's device."""
        return [(n, self._value(support.tensors[n])) for n in self.signature.support_inputs]

    def match(self, features: Sequence[Any], support: list[tuple[str, Any]],
              outputs: Sequence[str]) -> list[np.ndarray]:
        io = self.mat.io_binding()
        for name, value in zip(self.signature.query_inputs, features):
            self._bind(io, name, value)
        for name, value in support:
            io.bind_ortvalue_input(name, value)
        for name in outputs:
            io.bind_output(name)  # on the host: these are what the caller reads
        self.mat.run_with_iobinding(io)
        return [v.numpy() for v in io.get_outputs()]

    def to_host(self, x: Any) -> np.ndarray | list[np.ndarray]:
        if isinstance(x, (list, tuple)):
            return [v.numpy() for v in x]
        return x.numpy()

    def from_host(self, features: Sequence[np.ndarray]) -> list[Any]:
        return [self._value(f) for f in features]
