"""ONNX Runtime backend: preprocess / encoder / matcher sessions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from icpd.export.ort_session import ort_session, providers_for, share_thread_pool  # noqa: F401  (re-exported)


class OrtBackend:
    """Runs the exported graphs; arrays in and out are numpy (float32 / uint8)."""

    name = "ort"

    def __init__(self, files: dict[str, Path], device: str = "cpu", threads: int | None = None,
                 plugin: bool = False) -> None:
        self.device = device
        self.pre = ort_session(files["preprocess"], device, threads)
        self.enc = ort_session(files["encoder"], device, threads)
        self.mat = ort_session(files["matcher"], device, threads, custom_ops=plugin)  # plugin: NdcgPrior nodes
        self.matcher_inputs = [i.name for i in self.mat.get_inputs()]
        self.matcher_outputs = [o.name for o in self.mat.get_outputs()]

    def preprocess(self, pixels: np.ndarray) -> np.ndarray:
        return self.pre.run(None, {"pixels": pixels})[0]

    def encode(self, images: np.ndarray) -> list[np.ndarray]:
        return self.enc.run(None, {"images": images})

    def match(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        return self.mat.run(outputs, feeds)
