"""The model dirs, support caches and request images that the `icpd serve` measurement scripts
(``serve_load.py``, ``serve_batching.py``) share.

* ``tiny`` / ``paper``: the seeded random-weight export the benchmarks use (``icpd bench``'s cache,
  :func:`icpd.benchmarks.latency.prepare_model`: exported once into
  ``~/.cache/icpd/bench/<preset>-<fingerprint[:12]>`` and reused), or any ``--model`` dir.
* Two support caches (``ship``, ``tank``: seeded pictures with a box mask each), written once
  beside the model dir's own cache key.
* Request images: seeded tile-sized scenes (one model input each, so a request is one tile and the
  service and the in-process loop do the same work), a bright object on a textured background.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

CLASSES = ("ship", "tank")


def model_dir_for(preset: str | None, model: str | None) -> Path:
    """``model`` as given, else the benchmarks' seeded export of ``preset`` (exported once, reused)."""
    if model is not None:
        return Path(model)
    from icpd.benchmarks.latency import prepare_model

    return prepare_model(preset or "tiny", on_step=lambda s: print(f"[model] {s}", flush=True)).path


def supports_for(model_dir: Path, work: Path) -> list[Path]:
    """Two seeded 1-shot support caches for ``model_dir`` under ``work/<fingerprint[:12]>/``."""
    from icpd.runtime.predictor import Predictor

    p = Predictor.load(model_dir, backend="ort", threads=1)
    folder = work / p.fingerprint[:12]
    paths = [folder / f"{name}.support" for name in CLASSES]
    if all(path.is_file() for path in paths):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    s, rng = p.preset.image_size, np.random.default_rng(0)
    emb = rng.standard_normal((p.preset.num_classes, p.preset.embed_dim)).astype(np.float32)
    for k, path in enumerate(paths):
        mask = np.zeros((s, s), np.uint8)
        mask[s // 6 + 10 * k : s // 2 + 10 * k, s // 4 : s // 2 + s // 8] = 1
        image = rng.integers(0, 256, (s, s, 3), np.uint8)
        p.encode_support([image], [mask], CLASSES[k], np.roll(emb, k, 0)).save(path)
    return paths


def request_images(size: int, count: int = 8, seed: int = 0) -> list[np.ndarray]:
    """``count`` seeded (size, size, 3) uint8 RGB scenes: noise texture and one bright box each."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        img = (rng.integers(40, 90, (size, size, 3)) + rng.integers(0, 30, (1, 1, 3))).astype(np.uint8)
        y, x = rng.integers(0, size // 2, 2)
        h, w = rng.integers(size // 6, size // 2, 2)
        img[y : y + h, x : x + w] = rng.integers(180, 256, 3)
        images.append(img)
    return images


def png_bytes(rgb: np.ndarray) -> bytes:
    """An (H, W, 3) RGB image as PNG bytes (OpenCV writes BGR)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("cv2.imencode failed")
    return buf.tobytes()


def default_work() -> Path:
    """Where the support caches are kept: ``icpd.config.cache_root() / "serve-bench"``."""
    from icpd.config import cache_root

    return cache_root() / "serve-bench"
