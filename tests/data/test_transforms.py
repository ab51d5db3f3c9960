"""Episode transforms: scale weights, flips, normalisation."""

from __future__ import annotations

import math

import numpy as np
import torch

from icpd.data.transforms import random_flip, resize_label, scale_weights, to_tensor


def test_scale_weights_two_components_exact():
    mask = np.zeros((64, 64), np.uint8)
    mask[2:4, 2:4] = 1  # A = 4
    mask[10:14, 20:24] = 1  # A = 16
    mask[30:33, 30:33] = 1  # 9 pixels ...
    mask[33, 33] = 1  # ... plus one touching only diagonally: 8-connected, A = 10
    w = scale_weights(mask)
    assert w.dtype == np.float32 and w.shape == (64, 64)
    assert np.allclose(w[2:4, 2:4], 1 - math.log(4 / 65536), rtol=0, atol=1e-6)
    assert np.allclose(w[10:14, 20:24], 1 - math.log(16 / 65536), rtol=0, atol=1e-6)
    assert np.isclose(w[33, 33], 1 - math.log(10 / 65536), rtol=0, atol=1e-6)
    assert np.isclose(w[30, 30], w[33, 33])
    assert (w[mask == 0] == 1).all()


def test_scale_weights_full_tile_and_empty():
    assert np.allclose(scale_weights(np.ones((256, 256), np.uint8)), 1.0)
    assert (scale_weights(np.zeros((8, 8), np.float32)) == 1).all()


def test_random_flip_moves_image_and_label_together():
    img = np.arange(6 * 6 * 3, dtype=np.uint8).reshape(6, 6, 3)
    lab = img[..., 0].copy()
    seen = set()
    for s in range(20):
        fi, fl = random_flip(img, lab, np.random.default_rng(s))
        np.testing.assert_array_equal(fi[..., 0], fl)
        seen.add(fi.tobytes())
    assert len(seen) == 4  # none, h, v, both


def test_to_tensor_normalises_per_channel():
    img = np.full((2, 2, 3), 255, np.uint8)
    x = to_tensor(img, (0.5, 0.25, 0.0), (0.5, 0.25, 2.0))
    assert x.shape == (3, 2, 2) and x.dtype == torch.float32
    torch.testing.assert_close(x[:, 0, 0], torch.tensor([1.0, 3.0, 0.5]))


def test_resize_label_adds_no_values():
    lab = np.zeros((10, 10), np.uint8)
    lab[3:7, 3:7] = 9
    assert set(np.unique(resize_label(lab, 23))) == {0, 9}
