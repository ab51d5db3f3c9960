"""SegmentationMeter against IoUs computed by hand on constructed masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from icpd.training.metrics import SegmentationMeter


def _box(y0: int, y1: int, x0: int, x1: int, size: int = 10) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_hand_computed_ious():
    # episode 1, class 1: pred 4x4 box, gt 4x4 box shifted by 2 columns -> I = 8, U = 24
    p1, g1 = _box(0, 4, 0, 4), _box(0, 4, 2, 6)
    # episode 2, class 1: pred == gt, 2x5 -> I = 10, U = 10
    p2, g2 = _box(5, 7, 0, 5), _box(5, 7, 0, 5)
    # episode 3, class 6: empty pred, gt 3x3 -> I = 0, U = 9
    p3, g3 = np.zeros((10, 10), bool), _box(0, 3, 0, 3)
    meter = SegmentationMeter(class_names=[f"c{i}" for i in range(1, 16)])
    meter.update(np.stack([p1, p2]), np.stack([g1, g2]), [1, 1])
    meter.update(torch.from_numpy(p3[None]).float(), torch.from_numpy(g3[None]).long(), torch.tensor([6]))
    iou1 = (8 + 10) / (24 + 10)  # accumulated, not the mean of 8/24 and 1
    assert meter.class_iou(1) == pytest.approx(iou1, abs=1e-12)
    assert meter.class_iou(6) == 0.0
    assert meter.miou([1, 6]) == pytest.approx(iou1 / 2, abs=1e-12)
    assert meter.miou() == pytest.approx(iou1 / 2, abs=1e-12)
    # background: episode 1: not-pred & not-gt = 100 - 24 = 76, union = 100 - 8 = 92
    # episode 2: 90 / 90; episode 3: 91 / 100
    fg = (8 + 10 + 0) / (24 + 10 + 9)
    bg = (76 + 90 + 91) / (92 + 90 + 100)
    assert meter.fb_iou() == pytest.approx((fg + bg) / 2, abs=1e-12)
    table = meter.per_class()
    assert table[1] == {"iou": pytest.approx(iou1), "intersection": 18, "union": 34, "episodes": 2, "name": "c1"}
    out = json.loads(meter.to_json([1, 6]))
    assert out["miou"] == pytest.approx(iou1 / 2) and out["episodes"] == 3 and set(out["per_class"]) == {"1", "6"}


def test_numpy_and_torch_agree():
    rng = np.random.default_rng(0)
    p, g = rng.random((4, 8, 8)) > 0.5, rng.random((4, 8, 8)) > 0.5
    a, b = SegmentationMeter(), SegmentationMeter()
    a.update(p, g, [2, 3, 2, 4])
    b.update(torch.from_numpy(p), torch.from_numpy(g.astype(np.float32)), torch.tensor([2, 3, 2, 4]))
    assert a.miou() == b.miou() and a.fb_iou() == b.fb_iou()
    a.reset()
    with pytest.raises(ValueError, match="no episodes"):
        a.miou()


def test_bad_inputs():
    m = SegmentationMeter()
    with pytest.raises(ValueError, match="binary"):
        m.update(np.full((1, 2, 2), 0.7), np.zeros((1, 2, 2)), 1)
    with pytest.raises(ValueError, match="same shape"):
        m.update(np.zeros((1, 2, 2)), np.zeros((1, 3, 2)), 1)
    with pytest.raises(ValueError, match="1..15"):
        m.update(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), 16)
    m.update(np.zeros((1, 2, 2)), np.ones((1, 2, 2)), 3)
    with pytest.raises(ValueError, match="class 5 has no episodes"):
        m.miou([3, 5])
