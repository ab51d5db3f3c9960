"""TensorRT engines for exported model dirs: building (``build``) and backend-vs-FP32 validation
(``validate``). The engine sidecar is :mod:`icpd.artifacts.engine_sidecar` (the runtime reads it).

Nothing here imports TensorRT at module level; functions that need it import it and raise
:class:`TensorRTUnavailableError` with what to install when it is missing.
"""

from __future__ import annotations

from icpd.kernels.tensorrt import TensorRTUnavailableError, import_tensorrt

__all__ = ["TensorRTUnavailableError", "import_tensorrt"]
