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
