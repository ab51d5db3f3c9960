"""The README's Python section runs as written (issue 16): the array path, the target picked from
ClassEmbeddings by name, intermediate outputs by name. Only the file names are laid out here."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _python_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("From Python"):]
    match = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert match, "README: no ```python block after 'From Python'"
    return match.group(1)


@pytest.fixture()
def readme_files(tmp_path, monkeypatch, tiny_model_dir):
    """The paths the README names, made from the tiny model: models/isaid_f0, plane.support and
    isaid.safetensors (15 named classes, ship third: file order is not target-first)."""
    import torch

    from icpd.model.text import ClassEmbeddings, save_class_embeddings
    from icpd.runtime import Predictor

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "isaid_f0").symlink_to(tiny_model_dir, target_is_directory=True)
    p = Predictor.load(tiny_model_dir, backend="ort")
    names = ("plane", "harbor", "ship", *(f"c{i}" for i in range(12)))
    emb = ClassEmbeddings(torch.randn(15, p.preset.embed_dim, generator=torch.Generator().manual_seed(5)), names)
    save_class_embeddings(tmp_path / "isaid.safetensors", emb)
    rng = np.random.default_rng(0)
    mask = np.zeros((128, 128), np.uint8)
    mask[30:70, 40:90] = 1
    plane = p.encode_support([rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)], [mask], "plane", emb)
    plane.save(tmp_path / "plane.support")
    monkeypatch.chdir(tmp_path)
    return emb


def test_readme_python_section_runs_as_written(readme_files):
    rng = np.random.default_rng(1)
    m1, m2 = np.zeros((128, 128), np.uint8), np.zeros((160, 96), np.uint8)
    m1[10:50, 20:60] = 1
    m2[40:120, 30:70] = 1
    env = {"img1": rng.integers(0, 256, (128, 128, 3), dtype=np.uint8), "mask1": m1,
           "img2": rng.integers(0, 256, (160, 96, 3), dtype=np.uint8), "mask2": m2,
           "images": rng.integers(0, 256, (2, 200, 150, 3), dtype=np.uint8)}
    exec(compile(_python_block(), str(README), "exec"), env)  # noqa: S102 - our own README
    p, pred, ship = env["p"], env["pred"], env["ship"]
    assert p.class_names == ["plane", "ship"]
    # the "ship" row (third in the file) became the target row
    np.testing.assert_array_equal(ship.tensors["class_embeddings"], readme_files.for_target("ship").numpy())
    assert not np.array_equal(ship.tensors["class_embeddings"][0], readme_files.for_target("plane").numpy()[0])
    g = p.preset.clip_grid
    assert pred.outputs["query_prior"].shape == (2, 2, g, g)
    assert pred.outputs["pyramid_l3"].shape[:2] == (2, 2)
    assert pred.labels.shape[0] == 2 and pred.probs.shape[:2] == (2, 2)
