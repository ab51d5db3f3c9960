"""Evaluate an exported model on episodic data: a ``Predictor`` as an episode predictor.

Episodes carry their own supports (one support set per query), so each item is matched with
its own prepared support; the query and support images of the whole batch go through the
backend's encoder together.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from icpd.artifacts.support_cache import SupportSet
from icpd.runtime.predictor import Predictor
from icpd.runtime.support_encoding import prepare_support_arrays


class ExportedEpisodePredictor:
    """An exported model (a :class:`Predictor` on torch, ort or trt) as an episode predictor:
    ``predict_episodes(batch) -> (B, S, S) bool``; :class:`~icpd.training.evaluate.TorchEpisodePredictor`
    is the eager model's counterpart.

    The batch holds normalised float images (``query`` (B,3,S,S), ``support_images``
    (B,K,3,S,S)), ``support_masks`` (B,K,S,S) and ``class_embeddings`` (B,15,D), as the data
    sets produce them; the backend's encoder takes normalised images directly.
    """

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    def predict_episodes(self, batch: Mapping[str, Any]) -> torch.Tensor:
        backend = self.predictor.backend
        q = np.ascontiguousarray(batch["query"].numpy(), dtype=np.float32)
        s = batch["support_images"]
        b = s.shape[0]
        # queries and supports in one encoder pass; the supports' features are prepared on the host
        feats = backend.to_host(backend.encode(np.concatenate([q, s.flatten(0, 1).numpy().astype(np.float32)])))
        masks = batch["support_masks"].float().numpy()  # (B, K, S, S)
        prepared = prepare_support_arrays([f[b:] for f in feats], masks)  # as `icpd cache-support` does
        embeddings = batch["class_embeddings"].float().numpy()
        sig = backend.signature
        out = []
        for i in range(b):  # one support set per query
            packed = sig.pack_support(prepared, embeddings[i], masks[i], item=i)
            support = _episode_support(packed, masks.shape[1], self.predictor.fingerprint)
            (logits,) = self.predictor.match([f[i : i + 1] for f in feats], support, ["logits"])
            out.append(torch.from_numpy(logits.argmax(axis=1) == 1))
        return torch.cat(out)


def _episode_support(packed: Mapping[str, np.ndarray], shots: int, fingerprint: str) -> SupportSet:
    tensors = {n: np.ascontiguousarray(t, dtype=np.float32) for n, t in packed.items()}
    return SupportSet("episode", fingerprint, shots, tensors)
