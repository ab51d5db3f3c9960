"""Seeded support caches for the tiny model, shared by the infer, windowed and Ray tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from icpd.runtime.predictor import Predictor

S = 128  # tiny preset input size


def make_supports(model_dir: Path, folder: Path, names: tuple[str, str] = ("ship", "tank")) -> list[Path]:
    """Two seeded 1-shot support caches for the tiny model, ``folder/<name>.support`` (spaces -> _);
    shared by test_infer.py, test_scene.py and the Ray tests."""
    p = Predictor.load(model_dir, backend="ort", threads=1)
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (2, S, S, 3), dtype=np.uint8)
    masks = [np.zeros((S, S), np.uint8) for _ in range(2)]
    masks[0][20:60, 30:70] = 1
    masks[1][50:90, 10:40] = 1
    emb = np.random.default_rng(1).standard_normal((15, 32)).astype(np.float32)
    return [p.encode_support([imgs[k]], [masks[k]], name, np.roll(emb, k, 0))
            .save(folder / f"{name.replace(' ', '_')}.support") for k, name in enumerate(names)]
