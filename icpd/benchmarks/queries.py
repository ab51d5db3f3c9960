"""Inputs and the query path the latency scenarios time: seeded synthetic tiles, support masks and class
embeddings, and the cached-support query as ``Predictor.predict`` runs it (nothing re-implemented).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from icpd.artifacts.support_cache import SupportSet
    from icpd.benchmarks.timer import StageTimer
    from icpd.runtime.predictor import Predictor

__all__ = ["THRESHOLD", "Inputs", "inputs_for", "query_step", "run_query", "session"]

THRESHOLD = 0.5  # foreground probability a class needs to win a pixel (Predictor.predict's default)


class Inputs:
    """Seeded synthetic tiles, support masks (rectangles) and class embeddings for one preset."""

    def __init__(self, size: int, classes: int, embed_dim: int, pool: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.pixels = rng.integers(0, 256, (pool, size, size, 3), dtype=np.uint8)  # (P, S, S, 3)
        self.masks = []
        for _ in range(pool):
            h, w = rng.integers(size // 8, size // 2, 2)
            y, x = rng.integers(0, size - h), rng.integers(0, size - w)
            mask = np.zeros((size, size), np.uint8)
            mask[y : y + h, x : x + w] = 1
            self.masks.append(mask)
        self.embeddings = rng.standard_normal((classes, embed_dim)).astype(np.float32)  # (15, D)

    def query(self, batch: int) -> np.ndarray:
        """(B, S, S, 3) uint8 tiles, taken from the end of the pool (supports come from the start)."""
        idx = [(len(self.pixels) - 1 - i) % len(self.pixels) for i in range(batch)]
        return self.pixels[idx]

    def support(self, predictor: Predictor, shots: int, cls: int = 0) -> SupportSet:
        """Class ``cls``: shots images from position ``cls``, its embedding row first."""
        idx = [(cls + k) % len(self.pixels) for k in range(shots)]
        emb = np.roll(self.embeddings, -cls, axis=0)
        return predictor.encode_support([self.pixels[i] for i in idx], [self.masks[i] for i in idx],
                                        f"class{cls}", emb)


def inputs_for(predictor: Predictor, pool: int, seed: int = 0) -> Inputs:
    """``pool`` seeded tiles (and masks, embeddings) of ``predictor``'s preset."""
    p = predictor.preset
    return Inputs(p.image_size, p.num_classes, p.embed_dim, pool, seed)


def session(predictor: Predictor, supports: list[SupportSet]) -> Predictor:
    """A session on ``predictor``'s loaded backend holding ``supports`` (each uploaded once, here)."""
    s = predictor.fork()
    for support in supports:
        s.add_support(support)
    return s


def run_query(predictor: Predictor, images: np.ndarray, supports: list[SupportSet] | None = None,
              stages: StageTimer | None = None, threshold: float = THRESHOLD) -> np.ndarray:
    """``Predictor.predict(images).labels`` with its stages timed by ``stages``: (B, S, S) uint8 labels.

    ``supports``: answer these classes (a session made for this call) instead of the predictor's own.
    """
    target = predictor if supports is None else session(predictor, supports)
    return target.predict(images, threshold, timer=stages).labels


def query_step(predictor: Predictor, shots: int = 1, batch: int = 1, classes: int = 1,
               stages: StageTimer | None = None, seed: int = 0) -> Callable[[], np.ndarray]:
    """The cached-support query as a zero-argument call (supports encoded and uploaded now, outside any timing)."""
    inputs = inputs_for(predictor, max(shots + classes, batch + 1), seed)
    s = session(predictor, [inputs.support(predictor, shots, c) for c in range(classes)])
    images = inputs.query(batch)
    return lambda: s.predict(images, THRESHOLD, timer=stages).labels
