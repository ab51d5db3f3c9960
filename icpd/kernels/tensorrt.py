"""Importing TensorRT, or saying what to install: the one place that does ``import tensorrt``.

Nothing imports TensorRT at module level; the functions that need it call :func:`import_tensorrt`.
"""

from __future__ import annotations


class TensorRTUnavailableError(RuntimeError):
    """TensorRT's Python package is missing or cannot load its libraries."""


def import_tensorrt():
    """``import tensorrt``, or a :class:`TensorRTUnavailableError` that says what to do."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as err:  # OSError: the bindings are there but libnvinfer/libnvonnxparser are not
        raise TensorRTUnavailableError(
            f"TensorRT is not available here ({err}); install it on the target (pip install 'icpd[trt]' from "
            "NVIDIA's index, or JetPack's python3-libnvinfer) and run this there. ONNX Runtime (--backend ort) "
            "and PyTorch (--backend torch) work without it."
        ) from err
    return trt
