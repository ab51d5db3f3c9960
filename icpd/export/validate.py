"""Per-output error statistics between a backend and a reference (like Polygraphy's comparisons)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ErrorStats:
    name: str
    max_abs: float
    mean_abs: float
    p99_abs: float
    max_rel: float
    mean_rel: float
    p99_rel: float
    ref_max: float  # max |reference|, the scale the absolute errors should be read against

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)


def error_stats(name: str, actual: np.ndarray, reference: np.ndarray) -> ErrorStats:
    a = np.asarray(actual, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if a.shape != r.shape:
        raise ValueError(f"{name}: shape {a.shape} != reference {r.shape}")
    diff = np.abs(a - r)
    rel = diff / np.maximum(np.abs(r), 1e-6)
    return ErrorStats(
        name=name,
        max_abs=float(diff.max()),
        mean_abs=float(diff.mean()),
        p99_abs=float(np.percentile(diff, 99)),
        max_rel=float(rel.max()),
        mean_rel=float(rel.mean()),
        p99_rel=float(np.percentile(rel, 99)),
        ref_max=float(np.abs(r).max()),
    )


def mask_agreement(logits: np.ndarray, ref_logits: np.ndarray) -> dict[str, float]:
    """Argmax masks of (B, 2, H, W) logits: pixel agreement and foreground IoU vs the reference."""
    a = np.argmax(logits, axis=1) == 1
    r = np.argmax(ref_logits, axis=1) == 1
    union = np.logical_or(a, r).sum()
    iou = 1.0 if union == 0 else float(np.logical_and(a, r).sum() / union)
    return {"pixel_agreement": float((a == r).mean()), "foreground_iou": iou}


def merge(stats: list[ErrorStats]) -> ErrorStats:
    """Worst case over several runs of the same output."""
    return ErrorStats(
        name=stats[0].name,
        max_abs=max(s.max_abs for s in stats),
        mean_abs=float(np.mean([s.mean_abs for s in stats])),
        p99_abs=max(s.p99_abs for s in stats),
        max_rel=max(s.max_rel for s in stats),
        mean_rel=float(np.mean([s.mean_rel for s in stats])),
        p99_rel=max(s.p99_rel for s in stats),
        ref_max=max(s.ref_max for s in stats),
    )
