"""A stand-in for the ``tensorrt`` module that records what the builder is asked to do.

TensorRT cannot be installed here. The stand-in has the Python API's names and signatures as
documented for 10.x and 11.x (``BuilderFlag``, ``NetworkDefinitionCreationFlag``,
``IBuilderConfig.create_timing_cache / set_timing_cache / get_timing_cache``,
``builder_optimization_level``, ``progress_monitor``, ``IProgressMonitor``,
``IPluginRegistry.load_library``), so tests can check which flags and settings icpd passes.
Nothing here computes: a "built engine" is the bytes ``b"engine:<onnx file name>"``.
"""

from __future__ import annotations

import enum
import types
from typing import Any


class _Logger:
    VERBOSE, INFO, WARNING, ERROR = range(4)

    def __init__(self, level: int = 2) -> None:
        self.level = level


class _HostMemory(bytes):
    """IHostMemory: the buffer protocol is all icpd uses (``bytes(...)``)."""


class _TimingCache:
    def __init__(self, blob: bytes, calls: list) -> None:
        self.entries = bytes(blob)
        self.calls = calls

    def serialize(self) -> _HostMemory:
        return _HostMemory(self.entries)


class _Config:
    def __init__(self, trt: types.ModuleType) -> None:
        self.trt = trt
        self.flags = {trt.BuilderFlag.TF32} if hasattr(trt.BuilderFlag, "TF32") else set()  # TF32: on by default
        self.builder_optimization_level = 3
        self.progress_monitor = None
        self.timing_cache: _TimingCache | None = None
        self.profiles: list = []

    def set_memory_pool_limit(self, pool: Any, size: int) -> None:
        self.trt.calls.append(("set_memory_pool_limit", pool, size))

    def set_flag(self, flag: Any) -> None:
        self.trt.calls.append(("set_flag", flag.name))
        self.flags.add(flag)

    def clear_flag(self, flag: Any) -> None:
        self.trt.calls.append(("clear_flag", flag.name))
        self.flags.discard(flag)

    def get_flag(self, flag: Any) -> bool:
        return flag in self.flags

    def create_timing_cache(self, serialized_timing_cache: bytes) -> _TimingCache:
        self.trt.calls.append(("create_timing_cache", bytes(serialized_timing_cache)))
        return _TimingCache(serialized_timing_cache, self.trt.calls)

    def set_timing_cache(self, cache: _TimingCache, ignore_mismatch: bool) -> bool:
        self.trt.calls.append(("set_timing_cache", cache.entries, ignore_mismatch))
        if cache.entries and not cache.entries.startswith(self.trt.device_key):
            return False  # "made on another device": TensorRT refuses it unless ignore_mismatch
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> _TimingCache | None:
        return self.timing_cache

    def add_optimization_profile(self, profile: Any) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1


class _Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
        self.shapes[name] = (lo, opt, hi)


class _Registry:
    def __init__(self, trt: types.ModuleType) -> None:
        self.trt = trt
        self.creators: set[tuple[str, str, str]] = set()

    def load_library(self, plugin_path: str) -> Any:
        self.trt.calls.append(("load_library", plugin_path))
        if not self.trt.load_library_ok:
            return None  # IPluginRegistry::loadLibrary returns nullptr on failure
        if ("NdcgPrior", "1", "icpd") in self.creators:
            return None  # "fails and returns nullptr if any of the plugins are already registered"
        self.creators.add(("NdcgPrior", "1", "icpd"))
        return types.SimpleNamespace(path=plugin_path)  # stands for the PyCapsule handle

    def get_creator(self, name: str, version: str, namespace: str = "") -> Any:
        return object() if (name, version, namespace) in self.creators else None


class _Network:
    num_layers = 0


class _Builder:
    def __init__(self, trt: types.ModuleType, logger: _Logger) -> None:
        self.trt = trt

    def get_plugin_registry(self) -> _Registry:
        return self.trt.registry

    def create_network(self, flags: int = 0) -> _Network:
        self.trt.calls.append(("create_network", flags))
        return _Network()

    def create_builder_config(self) -> _Config:
        config = _Config(self.trt)
        self.trt.configs.append(config)
        return config

    def create_optimization_profile(self) -> _Profile:
        return _Profile()

    def build_serialized_network(self, network: _Network, config: _Config) -> _HostMemory:
        monitor = config.progress_monitor
        if monitor is not None:  # the order TensorRT calls it in: start, steps, finish
            monitor.phase_start("Building engine", None, 2)
            monitor.phase_start("Tactic selection", "Building engine", 1)
            monitor.step_complete("Tactic selection", 0)
            monitor.phase_finish("Tactic selection")
            for step in range(2):
                monitor.step_complete("Building engine", step)
            monitor.phase_finish("Building engine")
        if config.timing_cache is not None:
            config.timing_cache.entries = (config.timing_cache.entries or self.trt.device_key) + b"+" + \
                self.trt.current_onnx.encode()
        return _HostMemory(b"engine:" + self.trt.current_onnx.encode())


class _Parser:
    def __init__(self, trt: types.ModuleType, network: _Network, logger: _Logger) -> None:
        self.trt = trt
        self.num_errors = 0

    def parse_from_file(self, path: str) -> bool:
        self.trt.calls.append(("parse_from_file", path))
        self.trt.current_onnx = path.rsplit("/", 1)[-1]
        return True


def make_fake_tensorrt(version: str = "10.3.0.30") -> types.ModuleType:
    """A fake ``tensorrt`` of ``version``: 10.x has BuilderFlag.FP16 / OBEY_PRECISION_CONSTRAINTS and
    STRONGLY_TYPED = 1; 11.x has neither weak-typing flag and STRONGLY_TYPED = 0 (deprecated)."""
    major = int(version.split(".")[0])
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls = []
    trt.configs = []
    trt.load_library_ok = True
    trt.device_key = b"H100"
    trt.current_onnx = ""
    flags = {"TF32": 6, "REFIT": 4}
    if major < 11:
        flags.update(FP16=0, OBEY_PRECISION_CONSTRAINTS=9)
    trt.BuilderFlag = enum.IntEnum("BuilderFlag", flags)
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag",
                                                     {"STRONGLY_TYPED": 1 if major < 11 else 0})
    trt.MemoryPoolType = enum.IntEnum("MemoryPoolType", {"WORKSPACE": 0})
    trt.Logger = _Logger
    trt.Builder = lambda logger: _Builder(trt, logger)
    trt.OnnxParser = lambda network, logger: _Parser(trt, network, logger)
    trt.registry = _Registry(trt)

    class IProgressMonitor:  # the pybind11 trampoline's constructor must be called by subclasses
        def __init__(self) -> None:
            self.base_initialised = True

    trt.IProgressMonitor = IProgressMonitor
    return trt
