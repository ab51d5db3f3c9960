"""An exported model evaluated on episodes (ORT) agrees with the PyTorch network."""

from __future__ import annotations

import torch

from icpd.runtime.predictor import Predictor
from icpd.training.episodes import ExportedEpisodePredictor
from tests.conftest import tiny_inputs


def test_ort_episodes_match_torch_network(tiny_model, tiny_model_dir):
    q, s, m, e = tiny_inputs(batch=3, shots=2, seed=11)
    batch = {"query": q, "support_images": s, "support_masks": m, "class_embeddings": e}
    with torch.no_grad():
        ref = tiny_model(q, s, m, e).argmax(1) == 1
    for backend in ("ort", "torch"):
        got = ExportedEpisodePredictor(Predictor.load(tiny_model_dir, backend=backend)).predict_episodes(batch)
        assert got.shape == ref.shape and got.dtype == torch.bool
        assert (got == ref).float().mean() > 0.999, backend


def test_icpd_eval_of_an_exported_model_matches_pytorch(tiny_model_dir, tmp_path):
    """`icpd eval --model DIR --backend ort` scores the same episodes as the checkpoint in PyTorch."""
    import json

    from typer.testing import CliRunner

    from icpd.cli import app
    from icpd.data.synthetic import synthesize
    from icpd.model.text import ClassEmbeddings, save_class_embeddings

    synthesize(tmp_path / "data", "isaid5i", tiles=12, seed=0, size=128)
    save_class_embeddings(tmp_path / "e.safetensors",
                          ClassEmbeddings(torch.randn(15, 32), tuple(f"c{i}" for i in range(15))))
    common = ["eval", "--dataset", "isaid5i", "--root", str(tmp_path / "data"), "--fold", "0", "--episodes", "6",
              "--class-embeddings", str(tmp_path / "e.safetensors"), "--quiet"]
    scores = {}
    for name, extra in {
        "ort": ["--model", str(tiny_model_dir), "--backend", "ort"],
        "torch": ["--checkpoint", str(tiny_model_dir / "model.safetensors")],
    }.items():
        res = CliRunner().invoke(app, [*common, *extra, "--json", str(tmp_path / f"{name}.json")])
        assert res.exit_code == 0, res.output
        scores[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert scores["ort"]["episodes"] == scores["torch"]["episodes"] == 6
    assert abs(scores["ort"]["miou"] - scores["torch"]["miou"]) < 1e-3
    assert abs(scores["ort"]["fb_iou"] - scores["torch"]["fb_iou"]) < 1e-3
