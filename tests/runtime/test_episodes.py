"""An exported model evaluated on episodes (ORT) agrees with the PyTorch network."""

from __future__ import annotations

import torch

from icpd.runtime.episodes import PredictorEpisodePredictor
from icpd.runtime.predictor import Predictor
from tests.conftest import tiny_inputs


def test_ort_episodes_match_torch_network(tiny_model, tiny_model_dir):
    q, s, m, e = tiny_inputs(batch=3, shots=2, seed=11)
    batch = {"query": q, "support_images": s, "support_masks": m, "class_embeddings": e}
    with torch.no_grad():
        ref = tiny_model(q, s, m, e).argmax(1) == 1
    for backend in ("ort", "torch"):
        got = PredictorEpisodePredictor(Predictor.load(tiny_model_dir, backend=backend)).predict_episodes(batch)
        assert got.shape == ref.shape and got.dtype == torch.bool
        assert (got == ref).float().mean() > 0.999, backend
