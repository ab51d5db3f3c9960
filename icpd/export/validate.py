"""The validation harness: seeded episodes, error statistics and one pass rule.

Used by the export self-check (``icpd.export.onnx.validate_export``: ONNX Runtime against
PyTorch eager), ``icpd validate`` and the FP16 check (``icpd.apps.validate``: every backend
through the Predictor against PyTorch FP32, or the FP16 graphs against the FP32 ones).

- :func:`seeded_episodes`: query batches of uint8 images (not of the preset's size, so the
  resize is exercised), K support images with rectangle masks, seeded class embeddings.
- :func:`error_stats` per output and episode (like Polygraphy's comparisons), merged over the
  episodes with :func:`merge` (worst max and p99, mean of means); :func:`mask_agreement` of the
  argmax masks of the logits.
- The pass rule, :func:`judge` with :data:`TOLERANCES` for the precision under test:

  ====================================  ==========================  ==============  ==============
  what (merged over the episodes)        FP32                        FP16            INT8 (CPU)
  ====================================  ==========================  ==============  ==============
  ``images``, ``feat_*``: max abs err    <= 1e-4 * max(1, max|ref|)  reported        reported
  ``images``, ``feat_*``: cosine         reported                    reported        >= 0.99 (guard)
  ``logits``: max abs error              <= 1e-3 * max(1, max|ref|)  reported        reported
  other outputs (``query_prior``,        mean <= 1e-4 and            reported        reported
  ``pyramid_*``): abs error              p99 <= 1e-3
  argmax masks: min pixel agreement      >= 0.999                    reported        >= 0.98
  argmax masks: mean foreground IoU      >= 0.999                    >= 0.99         >= 0.95
  query prior max abs, rank agreement    reported                    reported        pass_rule
  ====================================  ==========================  ==============  ==============

  FP32 differs from the reference only by op order (round-off): the errors are bounded relative
  to each output's scale. Rank-prior channels (in the pyramids) move by one DCG step wherever two
  support distances are within round-off and swap, so they are judged by mean and p99, not max.
  FP16 is judged by its masks: its per-output errors (about 3 decimal digits, larger for
  TensorRT's FP16 kernels than for ONNX Runtime's FP16 storage) are reported, not bounded.
  INT8 (the encoder's MatMuls quantized, :mod:`icpd.export.quantize`) has a rule of its own,
  stated with its reasons in :mod:`icpd.export.pass_rule`: judged on what the user sees (mask
  IoU and pixel agreement against FP32, the query prior's max |diff|, the rank prior's
  agreement), with every encoder output's cosine as a loose guard against gross errors. The
  INT8 column above shows the two bounds it shares with the table (``TOLERANCES[INT8]``);
  :func:`judge` applies the whole rule. :func:`rank_prior_agreement` reports how often the rank
  prior moved.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np

from icpd.config import Precision, Preset
from icpd.export import pass_rule


# -- episodes ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Episode:
    query: np.ndarray  # (B, H, W, 3) uint8
    support: list[np.ndarray]  # K x (H, W, 3) uint8
    masks: list[np.ndarray]  # K x (H, W) uint8 {0, 1}, never all empty
    embeddings: np.ndarray  # (15, D) float32, target first


def seeded_episodes(preset: Preset, runs: int, seed: int = 0, batch: int = 2, max_shots: int = 3) -> list[Episode]:
    """``runs`` episodes from one seed: episode r has ``1 + r % max_shots`` shots and images of
    ``(S + 16 * (1 + r % 3), S + 8)`` pixels (S the preset's input size: every episode is resized,
    with varying heights)."""
    rng = np.random.default_rng(seed)
    episodes = []
    for r in range(runs):
        shots = 1 + r % max_shots
        h, w = preset.image_size + 16 * (1 + r % 3), preset.image_size + 8
        # smooth random images (8x8-pixel blocks) so features vary in space as in real imagery
        query = rng.integers(0, 256, (batch, h // 8, w // 8, 3)).repeat(8, 1).repeat(8, 2).astype(np.uint8)
        support = [rng.integers(0, 256, (h // 8, w // 8, 3)).repeat(8, 0).repeat(8, 1).astype(np.uint8)
                   for _ in range(shots)]
        masks = []
        for _ in range(shots):
            m = np.zeros((h, w), np.uint8)
            mh, mw = rng.integers(h // 6, h // 2), rng.integers(w // 6, w // 2)
            y, x = rng.integers(0, h - mh), rng.integers(0, w - mw)
            m[y : y + mh, x : x + mw] = 1
            masks.append(m)
        emb = rng.standard_normal((preset.num_classes, preset.embed_dim)).astype(np.float32)
        episodes.append(Episode(query, support, masks, emb))
    return episodes


# -- error statistics -------------------------------------------------------------------------------
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
    cosine: float = 1.0  # cosine similarity of actual and reference, flattened (worst over episodes when merged)

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)


def error_stats(name: str, actual: np.ndarray, reference: np.ndarray) -> ErrorStats:
    """Absolute and relative (to ``max(|ref|, 1e-6)``) errors of ``actual`` against ``reference`` (same shape)."""
    a = np.asarray(actual, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if a.shape != r.shape:
        raise ValueError(f"{name}: shape {a.shape} != reference {r.shape}")
    diff = np.abs(a - r)
    rel = diff / np.maximum(np.abs(r), 1e-6)
    norms = float(np.linalg.norm(a) * np.linalg.norm(r))
    # two all-zero outputs agree; one all-zero output against a non-zero one does not
    cosine = float(a.ravel() @ r.ravel() / norms) if norms > 0 else float(np.array_equal(a, r))
    return ErrorStats(
        name=name,
        max_abs=float(diff.max()),
        mean_abs=float(diff.mean()),
        p99_abs=float(np.percentile(diff, 99)),
        max_rel=float(rel.max()),
        mean_rel=float(rel.mean()),
        p99_rel=float(np.percentile(rel, 99)),
        ref_max=float(np.abs(r).max()),
        cosine=cosine,
    )


def mask_agreement(logits: np.ndarray, ref_logits: np.ndarray) -> dict[str, float]:
    """Argmax masks of (B, 2, H, W) logits: pixel agreement and foreground IoU vs the reference
    (IoU 1 where both masks are empty)."""
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
        cosine=min(s.cosine for s in stats),
    )


def rank_prior_agreement(actual: dict[str, np.ndarray], reference: dict[str, np.ndarray],
                         tol: float = 0.01) -> dict[str, float]:
    """How far the rank (NDCG) prior moved: over the rank channels of ``pyramid_*`` (odd channels:
    each level contributes [cos, rank]; pyramid_l3's last channel, the query prior, is even),
    the fraction of values within ``tol`` of the reference, and the max / mean abs difference."""
    diffs = [_rank_diff(actual[n], reference[n]) for n in reference if n.startswith("pyramid_") and n in actual]
    if not diffs:
        return {}
    d = np.concatenate(diffs)
    return {"agreement": float((d <= tol).mean()), "tolerance": tol, "max_abs": float(d.max()),
            "mean_abs": float(d.mean())}


def _rank_diff(actual: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """|actual - reference| over the rank channels of one (B, C, h, w) pyramid level, flattened."""
    return np.abs(actual[:, 1::2].astype(np.float64) - reference[:, 1::2]).ravel()


# -- the pass rule ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tolerance:
    """Bounds of the pass rule for one precision (see the module docstring); ``None``: reported only."""

    encoder_rel_to_scale: float | None  # images, feat_*: max abs error / max(1, max |ref|)
    logits_rel_to_scale: float | None  # logits: max abs error / max(1, max |ref|)
    other_mean_abs: float | None  # query_prior, pyramid_*: mean abs error
    other_p99_abs: float | None  # query_prior, pyramid_*: p99 abs error
    min_pixel_agreement: float | None  # argmax masks, worst episode
    min_mean_iou: float  # argmax masks: mean foreground IoU over the episodes
    min_encoder_cosine: float | None = None  # images, feat_*: cosine similarity to the reference, worst episode

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


TOLERANCES: dict[Precision, Tolerance] = {
    Precision.FP32: Tolerance(1e-4, 1e-3, 1e-4, 1e-3, 0.999, 0.999),
    Precision.FP16: Tolerance(None, None, None, None, None, 0.99),
    # the bounds INT8 shares with this table; the whole INT8 rule is icpd.export.pass_rule's
    Precision.INT8: Tolerance(None, None, None, None, pass_rule.INT8_RULE.min_pixel_agreement,
                              pass_rule.INT8_RULE.min_mean_iou,
                              min_encoder_cosine=pass_rule.INT8_RULE.min_encoder_cosine),
}


def __getattr__(name: str) -> object:
    # INT8_THRESHOLDS is read from pass_rule on each access, so a rule swapped in there (a test's
    # tighter bound) is the one the reports record
    if name == "INT8_THRESHOLDS":
        return pass_rule.INT8_RULE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def tolerance(precision: Precision | str) -> Tolerance:
    return TOLERANCES[Precision(precision)]


def judge(outputs: dict[str, ErrorStats], masks: list[dict[str, float]], precision: Precision | str,
          require_masks: bool = True, rank: list[float] | None = None) -> list[str]:
    """The pass rule: one line per failed bound (empty: passed).

    ``outputs`` are merged stats per output name; ``masks`` one :func:`mask_agreement` per episode;
    ``rank`` the rank prior's agreement per pyramid level and episode (INT8 only).
    ``require_masks=False`` accepts no masks (a matcher that could not be run is checked by its
    encoder outputs only). INT8 is judged by :func:`icpd.export.pass_rule.judge_int8`.
    """
    if Precision(precision) == Precision.INT8:
        failures = pass_rule.judge_int8(outputs, masks, rank or [])
        if not masks and require_masks:
            failures.append("no masks compared (the logits were not computed)")
        return failures
    tol = tolerance(precision)
    failures = []
    for name, s in outputs.items():
        if name.startswith("feat_") or name == "images":
            bound = tol.encoder_rel_to_scale
            if bound is not None and s.max_abs > bound * max(1.0, s.ref_max):
                failures.append(f"{name}: max abs error {s.max_abs:.3g} (scale {s.ref_max:.3g})")
            if tol.min_encoder_cosine is not None and s.cosine < tol.min_encoder_cosine:
                failures.append(f"{name}: cosine similarity {s.cosine:.5f} < {tol.min_encoder_cosine}")
        elif name == "logits":
            bound = tol.logits_rel_to_scale
            if bound is not None and s.max_abs > bound * max(1.0, s.ref_max):
                failures.append(f"logits: max abs error {s.max_abs:.3g} (scale {s.ref_max:.3g})")
        elif (tol.other_mean_abs is not None and s.mean_abs > tol.other_mean_abs) or (
                tol.other_p99_abs is not None and s.p99_abs > tol.other_p99_abs):
            failures.append(f"{name}: mean abs error {s.mean_abs:.3g}, p99 {s.p99_abs:.3g}")
    if not masks:
        if require_masks:
            failures.append("no masks compared (the logits were not computed)")
        return failures
    worst = min(m["pixel_agreement"] for m in masks)
    if tol.min_pixel_agreement is not None and worst < tol.min_pixel_agreement:
        failures.append(f"mask pixel agreement {worst:.4f} < {tol.min_pixel_agreement}")
    iou = float(np.mean([m["foreground_iou"] for m in masks]))
    if iou < tol.min_mean_iou:
        failures.append(f"mean foreground IoU {iou:.4f} < {tol.min_mean_iou}")
    return failures


@dataclass
class Comparison:
    """Outputs of one implementation against a reference over several episodes, and its verdict."""

    precision: Precision
    stats: dict[str, list[ErrorStats]] = field(default_factory=dict)
    masks: list[dict[str, float]] = field(default_factory=list)  # one per episode
    # rank prior: [values within the INT8 rule's tolerance, values] per episode (the episode an
    # output belongs to: the masks added so far; every caller adds an episode's masks after its outputs)
    rank_counts: dict[int, list[int]] = field(default_factory=dict)

    def add(self, name: str, actual: np.ndarray, reference: np.ndarray) -> None:
        self.stats.setdefault(name, []).append(error_stats(name, actual, reference))
        if name.startswith("pyramid_"):
            diff = _rank_diff(actual, reference)
            counts = self.rank_counts.setdefault(len(self.masks), [0, 0])
            counts[0] += int((diff <= pass_rule.INT8_RULE.rank_tolerance).sum())
            counts[1] += diff.size

    @property
    def rank(self) -> list[float]:
        """The rank prior's agreement per episode: fraction of its rank values (all pyramid levels)
        within the INT8 rule's tolerance of the reference (as :func:`rank_prior_agreement`)."""
        return [within / total for within, total in self.rank_counts.values() if total]

    def add_all(self, names: Iterable[str], actual: Iterable[np.ndarray], reference: Iterable[np.ndarray]) -> None:
        for name, a, r in zip(names, actual, reference):
            self.add(name, a, r)

    def add_masks(self, logits: np.ndarray, ref_logits: np.ndarray) -> None:
        self.masks.append(mask_agreement(logits, ref_logits))

    @property
    def outputs(self) -> dict[str, ErrorStats]:
        return {k: merge(v) for k, v in self.stats.items()}

    @property
    def mean_iou(self) -> float:
        return float(np.mean([m["foreground_iou"] for m in self.masks])) if self.masks else float("nan")

    @property
    def min_pixel_agreement(self) -> float:
        return float(min(m["pixel_agreement"] for m in self.masks)) if self.masks else float("nan")

    def failures(self, require_masks: bool = True) -> list[str]:
        return judge(self.outputs, self.masks, self.precision, require_masks, self.rank)
