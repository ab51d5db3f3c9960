"""Importing TensorRT, or saying what to install: the one place that does ``import tensorrt``.

Nothing imports TensorRT at module level; the functions that need it call :func:`import_tensorrt`.
:func:`load_plugin_library` loads the C++ NdcgPrior plugin library into a plugin registry and
checks the result (TensorRT returns no handle instead of raising, and a plugin that was never
registered otherwise shows up later as an unrelated ONNX-parser or deserialisation error).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from icpd.errors import ParamMessage, arg

# The C++ plugin's creator (icpd/kernels/plugin/NdcgPriorPlugin.cpp): name, version, namespace.
CPP_PLUGIN_CREATOR = ("NdcgPrior", "1", "icpd")


class TensorRTUnavailableError(ParamMessage, RuntimeError):
    """TensorRT's Python package is missing or cannot load its libraries."""


class PluginLibraryError(TensorRTUnavailableError):
    """TensorRT could not load the C++ NdcgPrior plugin library (the message names it and the fix)."""


def import_tensorrt():
    """``import tensorrt``, or a :class:`TensorRTUnavailableError` that says what to do."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as err:  # OSError: bindings there but libnvinfer/libnvonnxparser are not
        raise TensorRTUnavailableError(
            f"TensorRT is not available here ({err}); install it on the target (pip install 'icpd[trt]' from "
            f"NVIDIA's index, or JetPack's python3-libnvinfer) and run this there. ONNX Runtime "
            f"({arg('backend', 'ort')}) and PyTorch ({arg('backend', 'torch')}) work without it."
        ) from err
    return trt


def _creator_registered(registry: Any) -> bool:
    """Whether the registry already holds the C++ plugin's creator (a second load of a library fails)."""
    name, version, namespace = CPP_PLUGIN_CREATOR
    for lookup in ("get_creator", "get_plugin_creator"):  # get_creator: TensorRT >= 10 (IPluginV3 creators)
        fn = getattr(registry, lookup, None)
        if fn is None:
            continue
        try:
            if fn(name, version, namespace) is not None:
                return True
        except (TypeError, RuntimeError):  # a V3 creator asked through the V2 lookup, or the reverse
            continue
    return False


def load_plugin_library(trt: Any, registry: Any, path: str | os.PathLike[str],
                        what: str | None = None) -> Any:
    """``registry.load_library(path)``, checked: returns the library handle (``None`` when the plugin
    was already registered in this process, e.g. by an earlier build). ``what``: where the path came
    from (default: the parameter ``plugin_library``).

    ``IPluginRegistry::loadLibrary`` returns nullptr (``None`` in Python) when the library cannot be
    opened (missing, built for another architecture, unresolved libnvinfer symbols) or when one of
    its plugins is already registered; the second case is fine and recognised here.

    Raises:
        PluginLibraryError: naming the library, the running TensorRT version and what to do.
    """
    lib = Path(path)
    version = getattr(trt, "__version__", "unknown")
    named = arg("plugin_library", lib) if what is None else f"{what} {lib}"
    if not lib.is_file():
        raise PluginLibraryError(f"{named}: no such file; build it with icpd/kernels/plugin/CMakeLists.txt "
                                 f"against this TensorRT ({version})")
    handle = registry.load_library(str(lib))
    if handle:
        return handle
    if _creator_registered(registry):
        return None
    raise PluginLibraryError(
        f"{named}: TensorRT {version} could not load this plugin library (load_library returned no "
        f"handle). Rebuild it against TensorRT {version} with icpd/kernels/plugin/CMakeLists.txt "
        "(-DTENSORRT_ROOT=...), check that `ldd` finds libnvinfer and the CUDA runtime it links, and that "
        "it was built for this machine's architecture; TensorRT's log above may name the failing symbol"
    )
