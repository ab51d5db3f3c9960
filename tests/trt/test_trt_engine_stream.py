"""The TensorRT backend enqueues on the stream it owns, never on torch's current (legacy default) stream.

TensorRT is not installable here: the deserialised engine and its execution context are stand-ins
that record what they are given; ``TrtEngine`` (binding, enqueue) is the real one, on CPU tensors.
"""

from __future__ import annotations

import enum
import types
from pathlib import Path

import torch

from icpd.runtime.backends.trt import TrtEngine


def _fake_trt():
    trt = types.SimpleNamespace(float32="f32", float16="f16", int32="i32", int8="i8", bool="b")
    trt.TensorIOMode = enum.Enum("TensorIOMode", "INPUT OUTPUT")
    return trt


class _Context:
    def __init__(self) -> None:
        self.enqueued: list[int] = []
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name, shape) -> bool:
        return True

    def set_tensor_address(self, name, ptr) -> None:
        self.addresses[name] = ptr

    def get_tensor_shape(self, name):
        return (2, 3)

    def execute_async_v3(self, stream_handle: int) -> bool:
        self.enqueued.append(stream_handle)
        return True


class _Engine:
    num_io_tensors = 2

    def __init__(self, trt) -> None:
        self.trt = trt
        self.context = _Context()

    def create_execution_context(self):
        return self.context

    def get_tensor_name(self, i):
        return ("x", "y")[i]

    def get_tensor_mode(self, name):
        return self.trt.TensorIOMode.INPUT if name == "x" else self.trt.TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name):
        return self.trt.float32


def test_engine_enqueues_on_the_stream_it_was_given(tmp_path):
    trt = _fake_trt()
    engine = _Engine(trt)
    runtime = types.SimpleNamespace(deserialize_cuda_engine=lambda blob: engine)
    path = Path(tmp_path / "matcher.engine")
    path.write_bytes(b"engine")
    stream = types.SimpleNamespace(cuda_stream=0xBEEF)  # torch.cuda.Stream's handle attribute
    eng = TrtEngine(trt, runtime, path, torch.device("cpu"), stream)
    x = torch.ones(2, 3)
    out = eng({"x": x})
    assert engine.context.enqueued == [0xBEEF]
    assert out["y"].shape == (2, 3) and engine.context.addresses["y"] == out["y"].data_ptr()


class _Stream:
    """Records ``wait_stream`` calls into the shared event list (a torch.cuda.Stream stand-in: no GPU here)."""

    def __init__(self, name: str, events: list) -> None:
        self.name, self.events = name, events

    def wait_stream(self, other: _Stream) -> None:
        self.events.append(f"{self.name} waits for {other.name}")


def test_backend_stream_is_ordered_both_ways_with_the_callers_stream(monkeypatch):
    """Entering the backend's stream waits for the caller's work (inputs complete); leaving it makes the
    caller's stream wait for the backend's (outputs complete, inputs not reused early). Before the fix
    the caller's stream never waited: an encode() result used on it could be read before it was written."""
    import contextlib

    from icpd.runtime.backends.trt import TrtBackend

    events: list[str] = []
    caller = _Stream("caller", events)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: caller)
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())

    @contextlib.contextmanager
    def on(stream):
        events.append(f"enqueue on {stream.name}")
        yield
        events.append(f"back from {stream.name}")

    monkeypatch.setattr(torch.cuda, "stream", on)
    backend = object.__new__(TrtBackend)  # only the device and the stream matter here
    backend.device, backend.stream = torch.device("cuda:0"), _Stream("trt", events)
    with backend._on_stream():
        events.append("work")
    assert events == ["trt waits for caller", "enqueue on trt", "work", "back from trt", "caller waits for trt"]
