"""TensorRT engines for exported model dirs: building (``build``) and static compatibility checks
(``check``: ``icpd check-trt``). The engine sidecar is a file format
(:mod:`icpd.artifacts.engine_sidecar`); validating a backend is an application
(:mod:`icpd.apps.validate`).

Nothing here imports TensorRT at module level; functions that need it import it and raise
:class:`TensorRTUnavailableError` with what to install when it is missing.
"""

from __future__ import annotations

from icpd.kernels.tensorrt import TensorRTUnavailableError, import_tensorrt

__all__ = ["TensorRTUnavailableError", "import_tensorrt"]
