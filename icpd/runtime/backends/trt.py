"""TensorRT backend: ``encoder.engine`` and ``matcher.engine`` from ``icpd build``, run from Python.

Device buffers are torch CUDA tensors (no pycuda): each call sets the input shapes
(``context.set_input_shape``), binds every tensor's ``data_ptr()`` (``set_tensor_address``) and
enqueues on the backend's own CUDA stream (``execute_async_v3``): every call of the backend
(preprocessing, uploads, both engines, the copies back) runs under ``torch.cuda.stream(stream)``,
so nothing waits on the legacy default stream, which TensorRT warns forces extra
synchronisation; it waits for the caller's current stream on entry and the caller's stream waits
for it on return (event waits, no host synchronisation), so returned CUDA tensors are safe to use
on the caller's stream; latency measured around a backend call ends with that stream's
synchronisation. Images and query features stay on the GPU from preprocessing to the last
class's matcher pass; a class's support tensors are uploaded once (``load_support``), in the
engine's input dtypes. Only the matcher's requested outputs come back, through pinned host
memory after one synchronisation. With ``cuda_graphs=True`` each distinct input-shape set is
captured once into a CUDA graph with static buffers and replayed afterwards (TensorRT's enqueue
then costs one graph launch).

Preprocessing runs in PyTorch on the GPU (``icpd.export.wrappers.preprocess_pixels``, the same
function the ONNX graph was exported from). The engine sidecar is checked before anything is
deserialised (:func:`icpd.artifacts.engine_sidecar.check_sidecar`). Query batches larger than the engines'
profile are split into chunks of the profile's maximum.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from icpd.artifacts.model_dir import ModelDir, file_sha256
from icpd.artifacts.signature import MATCHER_OUTPUTS, MatcherSignature, encoder_output_names
from icpd.errors import ParamError, arg

if TYPE_CHECKING:
    from icpd.artifacts.support_cache import SupportSet


def _torch_dtype(trt: Any, dtype: Any) -> Any:
    import torch

    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
             trt.int8: torch.int8, trt.bool: torch.bool}
    if hasattr(trt, "int64"):
        table[trt.int64] = torch.int64
    if dtype not in table:
        raise TypeError(f"engine tensor type {dtype} has no torch equivalent here")
    return table[dtype]


class TrtEngine:
    """One deserialised engine with its execution context; tensors in and out are torch CUDA tensors."""

    def __init__(self, trt: Any, runtime: Any, path: Path, device: Any, stream: Any,
                 cuda_graphs: bool = False) -> None:
        """``stream``: the ``torch.cuda.Stream`` every enqueue goes to (its ``cuda_stream`` handle)."""
        self.trt = trt
        self.path = path
        self.device = device
        self.stream = stream
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"{path}: TensorRT could not deserialise it (see its log); rebuild with "
                               "`icpd build`")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}
        self.cuda_graphs = cuda_graphs
        self._graphs: dict[tuple, tuple[Any, dict[str, Any], dict[str, Any]]] = {}

    def _bind(self, feeds: dict[str, Any]) -> dict[str, Any]:
        import torch

        for name in self.inputs:
            t = feeds[name]
            if not self.context.set_input_shape(name, tuple(t.shape)):
                raise ValueError(f"{self.path.name}: input {name} of shape {tuple(t.shape)} is outside the "
                                 "engine's optimization profile; rebuild with wider --batch/--shots")
            self.context.set_tensor_address(name, t.data_ptr())
        outs = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            outs[name] = torch.empty(shape, dtype=self.dtypes[name], device=self.device)
            self.context.set_tensor_address(name, outs[name].data_ptr())
        return outs

    def _enqueue(self, stream: Any) -> None:
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"{self.path.name}: execute_async_v3 failed (see TensorRT's log)")

    def __call__(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """feeds: name -> CUDA tensor (cast to the engine's dtype here); returns name -> CUDA tensor
        (not synchronised)."""
        import torch

        feeds = {n: feeds[n].to(self.device, self.dtypes[n]).contiguous() for n in self.inputs}
        stream = self.stream
        if not self.cuda_graphs:
            outs = self._bind(feeds)
            self._enqueue(stream)
            return outs
        key = tuple(tuple(feeds[n].shape) for n in self.inputs)
        if key not in self._graphs:
            static_in = {n: t.clone() for n, t in feeds.items()}
            static_out = self._bind(static_in)
            self._enqueue(stream)  # one plain run first: TensorRT initialises lazily, outside the capture
            graph = torch.cuda.CUDAGraph()
            capture_stream = torch.cuda.Stream(self.device)
            capture_stream.wait_stream(stream)
            with torch.cuda.graph(graph, stream=capture_stream):
                self._enqueue(capture_stream)
            stream.wait_stream(capture_stream)
            self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[key]
        for n, t in feeds.items():
            static_in[n].copy_(t)
        graph.replay()
        return {n: t.clone() for n, t in static_out.items()}


class TrtBackend:
    """See :class:`~icpd.runtime.backends.protocol.RuntimeBackend`; images, features and support
    handles are torch CUDA tensors, matcher outputs come back as float32 numpy arrays."""

    name = "trt"

    def __init__(self, model_dir: ModelDir, engine_dir: str | os.PathLike[str] | None, device: str = "cuda",
                 cuda_graphs: bool = False, verify_engines: bool = True) -> None:
        import torch

        from icpd.artifacts.engine_sidecar import check_sidecar, read_sidecar
        from icpd.kernels.tensorrt import import_tensorrt
        from icpd.runtime.environment import current_env

        if engine_dir is None:
            raise ParamError(f"{arg('backend', 'trt')} needs {arg('engine_dir', 'ENGINE_DIR')} (build it with "
                             "`icpd build --model MODEL_DIR --out ENGINE_DIR`)", param="engine_dir")
        if not device.startswith("cuda"):
            raise ParamError(f"{arg('device', device)}: the TensorRT backend runs on a GPU; use "
                             f"{arg('device', 'cuda[:N]')}")
        trt = import_tensorrt()
        if not torch.cuda.is_available():
            raise ParamError(f"{arg('backend', 'trt')}: torch sees no CUDA device here")
        self.device = torch.device(device)
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        self.engine_dir = Path(engine_dir)
        self.sidecar = read_sidecar(self.engine_dir)
        check_sidecar(self.sidecar, current_env(index), model_dir.fingerprint,
                      rebuild_hint=f"icpd build --model {model_dir.path} --out {self.engine_dir} "
                                   f"--precision {self.sidecar.precision} --batch "
                                   f"{','.join(map(str, self.sidecar.batch))} --force")
        for role, entry in self.sidecar.engines.items():
            path = self.engine_dir / entry["name"]
            if not path.is_file():
                raise ValueError(f"engine dir {self.engine_dir}: {entry['name']} ({role}) is missing; "
                                 "rebuild with `icpd build`")
            if verify_engines and file_sha256(path) != entry["sha256"]:
                raise ValueError(f"engine dir {self.engine_dir}: {entry['name']} does not match its hash in "
                                 "engines.json; rebuild")
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        # C++ plugin: its creators must be registered before deserialising
        if self.sidecar.plugin.startswith("library:"):
            from icpd.kernels.tensorrt import load_plugin_library

            load_plugin_library(trt, self.runtime.get_plugin_registry(),
                                self.sidecar.plugin.removeprefix("library:"),
                                what=f"{self.engine_dir / 'engines.json'}: plugin library")
        self.preset = model_dir.preset
        with torch.cuda.device(self.device):
            self.stream = torch.cuda.Stream(self.device)  # the backend's own: see the module docstring
            engines = {role: self.engine_dir / self.sidecar.engines[role]["name"]
                       for role in ("encoder", "matcher")}
            self.encoder = TrtEngine(trt, self.runtime, engines["encoder"], self.device, self.stream,
                                     cuda_graphs)
            self.matcher = TrtEngine(trt, self.runtime, engines["matcher"], self.device, self.stream,
                                     cuda_graphs)
        self.signature = MatcherSignature.for_preset(self.preset)
        self.matcher_outputs = [n for n in MATCHER_OUTPUTS if n in self.matcher.outputs]
        self.max_batch = self.sidecar.batch[2]

    # -- host <-> device ------------------------------------------------------------------------
    def _to_device(self, a: np.ndarray) -> Any:
        import torch

        return torch.from_numpy(np.ascontiguousarray(a)).pin_memory().to(self.device, non_blocking=True)

    def _to_host(self, tensors: list[Any]) -> list[np.ndarray]:
        import torch

        host = [torch.empty(t.shape, dtype=torch.float32, pin_memory=True) for t in tensors]
        with self._on_stream():
            for h, t in zip(host, tensors):
                h.copy_(t.float(), non_blocking=True)
        self.stream.synchronize()
        return [h.numpy() for h in host]

    @contextlib.contextmanager
    def _on_stream(self) -> Iterator[None]:
        """This backend's device and stream as torch's current ones (allocations, copies and enqueues).

        Ordered both ways with the caller's current stream, without a host synchronisation: on entry
        this stream waits for what the caller queued (the tensors it passes in are complete before
        they are read), on exit the caller's stream waits for what was queued here, so a caller may
        use the returned CUDA tensors on its own stream, and a caller's tensor this stream still
        reads is not handed to new work on the caller's stream when the caller drops it.
        """
        import torch

        caller = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(caller)
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            yield
        caller.wait_stream(self.stream)

    def _chunks(self, n: int) -> list[slice]:
        return [slice(i, min(i + self.max_batch, n)) for i in range(0, n, self.max_batch)]

    # -- backend interface ---------------------------------------------------------------------
    def preprocess(self, pixels: Sequence[np.ndarray]) -> Any:
        """-> (B, 3, S, S) float32 CUDA tensor (preprocessed on the GPU)."""
        import torch

        from icpd.export.wrappers import preprocess_pixels

        with torch.no_grad(), self._on_stream():
            return torch.cat([preprocess_pixels(self._to_device(p), self.preset) for p in pixels])

    def encode(self, images: Any) -> list[Any]:
        """-> one CUDA tensor per level (batches above the profile's maximum run in chunks)."""
        import torch

        names = encoder_output_names(self.preset)
        with self._on_stream():
            x = self._to_device(images) if isinstance(images, np.ndarray) else images
            parts = [self.encoder({"images": x[sl]}) for sl in self._chunks(x.shape[0])]
            if len(parts) == 1:
                return [parts[0][n] for n in names]
            return [torch.cat([p[n] for p in parts]) for n in names]

    def load_support(self, support: SupportSet) -> dict[str, Any]:
        """The support inputs the engine has, as CUDA tensors in the engine's dtypes (uploaded once)."""

        names = [n for n in self.signature.support_inputs if n in self.matcher.inputs]
        with self._on_stream():
            return {n: self._to_device(support.tensors[n]).to(self.matcher.dtypes[n]) for n in names}

    def match(self, features: Sequence[Any], support: dict[str, Any],
              outputs: Sequence[str]) -> list[np.ndarray]:

        unknown = [o for o in outputs if o not in self.matcher_outputs]
        if unknown:
            raise ValueError(f"matcher outputs {unknown}: the engine has {self.matcher_outputs}")
        query = dict(zip(self.signature.query_inputs, features))
        parts = []
        with self._on_stream():
            for sl in self._chunks(features[0].shape[0]):
                out = self.matcher({**{n: q[sl] for n, q in query.items()}, **support})
                parts.append(self._to_host([out[n] for n in outputs]))
        if len(parts) == 1:
            return parts[0]
        return [np.concatenate([p[i] for p in parts]) for i in range(len(outputs))]

    def to_host(self, x: Any) -> np.ndarray | list[np.ndarray]:
        if isinstance(x, (list, tuple)):
            return self._to_host(list(x))
        return self._to_host([x])[0]

    def from_host(self, features: Sequence[np.ndarray]) -> list[Any]:

        with self._on_stream():
            return [self._to_device(f) for f in features]
