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

from icpd.export.wrappers import level_names
from icpd.model.icpd_net import Features, prepare_support_tensors
from icpd.runtime.predictor import Predictor


class PredictorEpisodePredictor:
    """``predict_episodes(batch) -> (B, S, S) bool`` through any Predictor backend.

    The batch holds normalised float images (``query`` (B,3,S,S), ``support_images``
    (B,K,3,S,S)), ``support_masks`` (B,K,S,S) and ``class_embeddings`` (B,15,D), as the data
    sets produce them; the backend's encoder takes normalised images directly.
    """

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.names = level_names(predictor.preset)

    def predict_episodes(self, batch: Mapping[str, Any]) -> torch.Tensor:
        q = np.ascontiguousarray(batch["query"].numpy(), dtype=np.float32)
        s = batch["support_images"]
        b = s.shape[0]
        feats = self.predictor.encode(np.concatenate([q, s.flatten(0, 1).numpy().astype(np.float32)]))
        q_feats = [f[:b] for f in feats]
        s_feats = Features.from_list([torch.from_numpy(np.ascontiguousarray(f[b:])) for f in feats])
        prepared = prepare_support_tensors(s_feats, batch["support_masks"].float())
        masks = []
        for i in range(b):  # one support set per query
            feeds = {f"query_{n}": f[i : i + 1] for n, f in zip(self.names, q_feats)}
            for n, f, nm, m in zip(self.names, prepared.features, prepared.norms, prepared.masks):
                feeds[f"support_feat_{n}"] = f[i].numpy()
                feeds[f"support_norm_{n}"] = nm[i].numpy()
                feeds[f"support_mask_{n}"] = m[i].numpy()
            feeds["class_embeddings"] = batch["class_embeddings"][i].numpy().astype(np.float32)
            if "support_masks" in self.predictor.backend.matcher_inputs:
                feeds["support_masks"] = batch["support_masks"][i].numpy().astype(np.float32)
            (logits,) = self.predictor.backend.match(feeds, ["logits"])
            masks.append(torch.from_numpy(logits.argmax(axis=1) == 1))
        return torch.cat(masks)
