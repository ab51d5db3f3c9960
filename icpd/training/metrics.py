"""Few-shot segmentation metrics: per-class foreground IoU (mIoU) and FB-IoU.

Counts are accumulated over all episodes before dividing (the benchmark convention): the IoU of
class ``c`` is ``sum(intersection) / sum(union)`` over every episode whose target is ``c``.

- ``miou(class_ids)``: mean over ``class_ids`` of the per-class foreground IoU.
- ``fb_iou()``: mean of the foreground IoU and the background IoU, each accumulated over *all*
  episodes (all classes pooled). Note: HSNet-style code averages per-class background IoUs
  instead; with one class per fold the two agree.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def format_score(value: float) -> str:
    """An IoU-type score as every output shows it: a fraction with 4 decimals (``0.2667``), the
    unit of ``eval.json``, ``metrics.jsonl`` and the README; never a percentage."""
    return f"{value:.4f}"


def _as_bool(x: ArrayLike, what: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"{what} must have shape (B, H, W) or (H, W), got {arr.shape}")
    if arr.dtype != bool:
        if not np.all((arr == 0) | (arr == 1)):
            raise ValueError(f"{what} must be binary (0/1 or bool); threshold probabilities or logits first")
        arr = arr.astype(bool)
    return arr


class SegmentationMeter:
    """Accumulates foreground and background intersection/union over episodes.

    Args:
        num_classes: class ids are ``1..num_classes``.
        class_names: optional names of ids ``1..num_classes`` for :meth:`per_class`.
    """

    def __init__(self, num_classes: int = 15, class_names: Sequence[str] | None = None) -> None:
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"got {len(class_names)} class names for {num_classes} classes")
        self.num_classes = num_classes
        self.class_names = tuple(class_names) if class_names is not None else None
        self.reset()

    def reset(self) -> None:
        n = self.num_classes + 1  # index 0 unused; index c = class id c
        self.fg_inter = np.zeros(n, np.int64)
        self.fg_union = np.zeros(n, np.int64)
        self.episodes = np.zeros(n, np.int64)
        self.bg_inter = 0
        self.bg_union = 0

    def update(self, pred: ArrayLike, gt: ArrayLike, class_ids: ArrayLike | Sequence[int] | int) -> None:
        """Add a batch of episodes.

        Args:
            pred: ``(B, H, W)`` binary predicted masks (bool or 0/1; torch or numpy).
            gt: ``(B, H, W)`` binary ground-truth masks of the target class.
            class_ids: ``(B,)`` target class id of each episode (1..num_classes), or one int.
        """
        p, g = _as_bool(pred, "pred"), _as_bool(gt, "gt")
        if p.shape != g.shape:
            raise ValueError(f"pred {p.shape} and gt {g.shape} must have the same shape")
        ids = class_ids.detach().cpu().numpy() if isinstance(class_ids, torch.Tensor) else np.asarray(class_ids)
        ids = np.broadcast_to(ids.astype(np.int64).reshape(-1), (p.shape[0],)) if ids.size == 1 else ids.reshape(-1)
        if ids.shape[0] != p.shape[0]:
            raise ValueError(f"got {ids.shape[0]} class ids for a batch of {p.shape[0]} masks")
        if ids.min() < 1 or ids.max() > self.num_classes:
            raise ValueError(f"class ids must be in 1..{self.num_classes}, got {sorted(set(ids.tolist()))}")
        inter = (p & g).sum(axis=(1, 2))
        union = (p | g).sum(axis=(1, 2))
        np.add.at(self.fg_inter, ids, inter)
        np.add.at(self.fg_union, ids, union)
        np.add.at(self.episodes, ids, 1)
        self.bg_inter += int((~p & ~g).sum())
        self.bg_union += int((~p | ~g).sum())

    def class_iou(self, class_id: int) -> float:
        """Foreground IoU of one class over all its episodes."""
        if not 1 <= class_id <= self.num_classes or self.episodes[class_id] == 0:
            raise ValueError(f"class {class_id} has no episodes; seen classes: {self.seen_classes()}")
        return _ratio(self.fg_inter[class_id], self.fg_union[class_id])

    def seen_classes(self) -> list[int]:
        """Class ids with at least one episode."""
        return np.flatnonzero(self.episodes).tolist()

    def miou(self, class_ids: Sequence[int] | None = None) -> float:
        """Mean foreground IoU over ``class_ids`` (default: every class with episodes)."""
        ids = self.seen_classes() if class_ids is None else list(class_ids)
        if not ids:
            raise ValueError("no episodes recorded yet; call update() first")
        return float(np.mean([self.class_iou(int(c)) for c in ids]))

    def fb_iou(self) -> float:
        """Mean of foreground IoU and background IoU, each pooled over all episodes."""
        if self.episodes.sum() == 0:
            raise ValueError("no episodes recorded yet; call update() first")
        fg = _ratio(self.fg_inter.sum(), self.fg_union.sum())
        bg = _ratio(self.bg_inter, self.bg_union)
        return (fg + bg) / 2

    def per_class(self) -> dict[int, dict[str, float | int | str]]:
        """``{class id: {"iou", "intersection", "union", "episodes"[, "name"]}}`` for seen classes."""
        table: dict[int, dict[str, float | int | str]] = {}
        for c in self.seen_classes():
            row: dict[str, float | int | str] = {
                "iou": self.class_iou(c),
                "intersection": int(self.fg_inter[c]),
                "union": int(self.fg_union[c]),
                "episodes": int(self.episodes[c]),
            }
            if self.class_names is not None:
                row["name"] = self.class_names[c - 1]
            table[c] = row
        return table

    def to_json(self, class_ids: Sequence[int] | None = None) -> str:
        """mIoU (over ``class_ids``, default all seen), FB-IoU and the per-class table as JSON."""
        return json.dumps(
            {
                "miou": self.miou(class_ids),
                "fb_iou": self.fb_iou(),
                "episodes": int(self.episodes.sum()),
                "per_class": {str(c): row for c, row in self.per_class().items()},
            },
            sort_keys=True,
        )


def _ratio(inter: int | np.integer, union: int | np.integer) -> float:
    # Union 0 means prediction and ground truth were both empty: a perfect (empty) match.
    return 1.0 if union == 0 else float(inter) / float(union)
