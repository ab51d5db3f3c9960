"""The README's Python section runs as written (issues 16, 20): the block is executed verbatim in
an empty namespace, so a name it uses but does not define, or a call that fails (a ``Raster``
from ``read_image`` passed to ``encode_support`` gave "images: got object ()"), fails this test.
Only the files it names are laid out here."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _python_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("From Python"):]
    match = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert match, "README: no ```python block after 'From Python'"
    return match.group(1)


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))  # cv2 writes BGR


@pytest.fixture()
def readme_files(tmp_path, monkeypatch, tiny_model_dir):
    """The paths the README names, made from the tiny model: models/isaid_f0, plane.support,
    isaid.safetensors (15 named classes, ship third: file order is not target-first), two support
    images with their masks (one smaller than the model input) and two scenes of other sizes."""
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
    for name, (h, w) in {"s1": (128, 128), "s2": (160, 96)}.items():
        _write_rgb(tmp_path / f"{name}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        m = np.zeros((h, w), np.uint8)
        m[h // 4 : h // 2, w // 4 : w // 2] = 255
        assert cv2.imwrite(str(tmp_path / f"{name}_mask.png"), m)
    _write_rgb(tmp_path / "scene1.png", rng.integers(0, 256, (200, 150, 3), dtype=np.uint8))
    _write_rgb(tmp_path / "scene2.png", rng.integers(0, 256, (90, 300, 3), dtype=np.uint8))
    monkeypatch.chdir(tmp_path)
    return emb


def test_readme_python_section_runs_as_written(readme_files):
    env: dict = {"__name__": "readme"}  # nothing else: the block defines every name it uses
    exec(compile(_python_block(), str(README), "exec"), env)  # noqa: S102 - our own README
    p, pred, ship = env["p"], env["pred"], env["ship"]
    assert p.class_names == ["plane", "ship"]
    assert ship.shots == 2
    # the "ship" row (third in the file) became the target row
    np.testing.assert_array_equal(ship.tensors["class_embeddings"], readme_files.for_target("ship").numpy())
    assert not np.array_equal(ship.tensors["class_embeddings"][0], readme_files.for_target("plane").numpy()[0])
    # s2.png (160x96) is narrower than the model input: upscaled, and said so
    assert ship.notes == [("image s2.png: 160x96 px (HxW) upscaled to the model input 128x128 (x1.3); "
                           "supports of at least 128 px a side keep their detail")]
    g = p.preset.clip_grid
    assert pred.outputs["query_prior"].shape == (2, 2, g, g)
    assert pred.outputs["pyramid_l3"].shape[:2] == (2, 2)
    assert pred.labels.shape == (2, 128, 128) and pred.probs.shape[:2] == (2, 2)
    # the Rasters gave exactly what their pixels give
    from icpd.io import read_image

    arrays = [read_image(f"scene{i}.png").pixels for i in (1, 2)]
    np.testing.assert_array_equal(p.predict(arrays).probs, p.predict(env["images"]).probs)
