"""A plain reference of the scene pipeline, the oracle of the tests of ``run_scene``, ``segment_array``
and ``icpd infer``: written without the library's block blending (:class:`icpd.runtime.scene.SceneBlend`).

Every tile of the row-major plan is cut from the scene (reflection-padded when the scene is smaller),
predicted in batches of ``batch`` (the batches the library's predictor calls use, so each tile gets
the same float32 probabilities), resized to the tile, weighted by :func:`tile_window` and summed over
the whole scene in plan order; the sum is divided by the summed weights. The same float32 additions
in the same order as the library's blocks: the two agree bit for bit.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from icpd.runtime.predictor import merge_labels
from icpd.runtime.scene import resize_maps
from icpd.runtime.tiling import plan_tiles, tile_window


class Reference(NamedTuple):
    probs: np.ndarray  # (N, H, W) float32
    labels: np.ndarray  # (H, W) uint8
    priors: np.ndarray | None  # (N, H, W) float32
    tiles: int


def blend_tiles(height: int, width: int, overlap: int, tiles, maps) -> np.ndarray:
    """(C, H, W) float32: sum of each tile's ``maps`` (C, tile, tile) cropped to the scene and weighted by
    ``tile_window``, divided by the sum of the weights (every pixel covered)."""
    total = np.zeros((maps[0].shape[0], height, width), np.float32)
    weight = np.zeros((height, width), np.float32)
    for t, m in zip(tiles, maps):
        window = tile_window(t, height, width, overlap)
        total[:, t.y : t.y + t.h, t.x : t.x + t.w] += m[:, : t.h, : t.w] * window
        weight[t.y : t.y + t.h, t.x : t.x + t.w] += window
    assert (weight > 0).all()
    return total / weight


def reference_scene(predictor, pixels: np.ndarray, tile: int, overlap: int, batch: int,
                    threshold: float = 0.5, priors: bool = False) -> Reference:
    """The scene pipeline's result on an (H, W, 3) uint8 scene, computed plainly (module docstring)."""
    height, width = pixels.shape[:2]
    tiles = plan_tiles(height, width, tile, overlap)
    probs, prior_maps = [], []
    for start in range(0, len(tiles), batch):
        chunk = tiles[start : start + batch]
        x = np.stack([np.pad(pixels[t.y : t.y + t.h, t.x : t.x + t.w],
                             ((0, t.size - t.h), (0, t.size - t.w), (0, 0)), mode="reflect") for t in chunk])
        pred = predictor.predict(x, threshold, priors=priors)
        probs += [resize_maps(p, tile, tile) for p in pred.probs]
        if priors:
            prior_maps += [resize_maps(p, tile, tile) for p in pred.priors]
    blended = blend_tiles(height, width, overlap, tiles, probs)
    return Reference(blended, merge_labels(blended[None], threshold)[0],
                     blend_tiles(height, width, overlap, tiles, prior_maps) if priors else None, len(tiles))
