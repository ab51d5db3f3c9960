"""icpd: deploy ICPD-Net few-shot segmentation of remote-sensing imagery.

``import icpd`` stays light: it imports neither torch, onnxruntime nor tensorrt and touches no GPU.
The entry points load on first use (as segment-anything's and open_clip's do):
``from icpd import Predictor, SupportSet, read_image, read_mask``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from icpd.config import Preset, get_preset, list_presets, register_preset

__all__ = ["Prediction", "Predictor", "Preset", "SupportSet", "__version__", "get_preset", "list_presets",
           "read_image", "read_mask", "register_preset"]

# name -> the module that defines it, imported on first use. No import of them here, not even for type
# checkers: every module imports `icpd` (its version), and the layer contract forbids `icpd` -> runtime.
_LAZY = {"Predictor": "icpd.runtime.predictor", "Prediction": "icpd.runtime.predictor",
         "SupportSet": "icpd.artifacts.support_cache", "read_image": "icpd.io", "read_mask": "icpd.io"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'icpd' has no attribute {name!r}")
