"""What a ``Predictor`` needs from a backend: data stays where the backend computes it.

Per ``Predictor``: ``load_support`` once per class (its tensors go to the backend's device once;
the backend returns a handle to them). Per query: ``preprocess`` + ``encode`` once, producing
images and features in the backend's own form (torch tensors on its device, ONNX Runtime
``OrtValue``s, TensorRT device buffers), then ``match`` once per class with those features and a
class's handle; only the matcher's requested outputs come back to the host, as numpy arrays.

``to_host`` / ``from_host`` are the only host <-> backend copies of images and features (support
encoding, validation, episodic evaluation use them; the query path does not).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from icpd.artifacts.signature import MatcherSignature
    from icpd.artifacts.support_cache import SupportSet

# The backend's own forms, opaque to the Predictor:
Images = Any  # (B, 3, S, S) float32 normalised images
Features = Any  # one tensor per level: (B, C_l, h_l, w_l), the CLIP level (B, g, g, D)
SupportHandle = Any  # one class's support inputs, on the backend's device


@runtime_checkable
class RuntimeBackend(Protocol):
    """The interface of ``TorchBackend``, ``OrtBackend`` and ``TrtBackend``."""

    name: str  # "torch", "ort", "trt"
    signature: MatcherSignature  # the matcher's input names and order
    matcher_outputs: list[str]  # the outputs ``match`` can return, in the matcher's order

    def preprocess(self, pixels: Sequence[np.ndarray]) -> Images:
        """Groups of uint8 RGB images, each (B_i, H_i, W_i, 3) (sizes may differ between groups)
        -> one batch of (sum B_i, 3, S, S) images, in the order given."""
        ...

    def encode(self, images: Images | np.ndarray) -> Features:
        """Images (the backend's own, or a host float32 array) -> features, one per level."""
        ...

    def load_support(self, support: SupportSet) -> SupportHandle:
        """A support set's tensors copied to the backend's device, once."""
        ...

    def match(self, features: Features, support: SupportHandle, outputs: Sequence[str]) -> list[np.ndarray]:
        """One matcher pass: features of B queries x one class -> the named outputs on the host."""
        ...

    def to_host(self, x: Images | Features) -> np.ndarray | list[np.ndarray]:
        """Images -> one (B, 3, S, S) array; features -> one array per level."""
        ...

    def from_host(self, features: Sequence[np.ndarray]) -> Features:
        """Host feature arrays (one per level, batch first) -> the backend's features."""
        ...
