"""The runtime core every application shares: :class:`Predictor` over torch / ONNX Runtime /
TensorRT backends, support encoding, tile planning and blending, and the one scene pipeline
(:func:`icpd.runtime.scene.run_scene`). ``SupportSet`` (a file format) lives in
:mod:`icpd.artifacts.support_cache` and is re-exported here for convenience."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from icpd.artifacts.support_cache import SupportSet
    from icpd.runtime.predictor import Prediction, Predictor

__all__ = ["Prediction", "Predictor", "SupportSet"]


def __getattr__(name: str):  # lazy: `import icpd.runtime` stays light
    if name in ("Predictor", "Prediction"):
        from icpd.runtime import predictor

        return getattr(predictor, name)
    if name == "SupportSet":
        from icpd.artifacts.support_cache import SupportSet

        return SupportSet
    raise AttributeError(name)
