"""Latency statistics: summaries, variance warnings and the regression rule.

All samples are latencies in milliseconds, one per timed iteration. Nothing here imports
torch, matplotlib or onnxruntime; scipy is imported inside :func:`mann_whitney` only.

The regression rule (asv-style, see :func:`is_regression`) gates on a *ratio* of medians and a
rank test, never on absolute times: on shared CI machines absolute times are noise. A rank test
that could not reach ``p < alpha`` with the samples at hand is refused (:func:`min_rounds`), never
read as "no regression".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from typing import NamedTuple

import numpy as np

__all__ = [
    "EXACT_MAX_PAIRS",
    "RankTest",
    "Status",
    "Summary",
    "TooFewSamples",
    "Verdict",
    "bootstrap_median_ratio",
    "can_reach",
    "high_variance",
    "is_regression",
    "mann_whitney",
    "min_rounds",
    "smallest_p_value",
    "summarize",
]

Samples = Sequence[float] | np.ndarray


@dataclass(frozen=True)
class Summary:
    """Summary of one latency sample set. Latencies in ms, throughput in items/s."""

    n: int  # number of timed iterations
    median: float  # ms
    p90: float  # ms, linear interpolation between order statistics (numpy default)
    p95: float  # ms
    p99: float  # ms
    mean: float  # ms
    std: float  # ms, sample standard deviation (ddof=1; 0 when n == 1)
    cv: float  # coefficient of variation std/mean, a fraction (0.05 == 5 %)
    min: float  # ms
    max: float  # ms
    throughput: float  # items/s at the median latency, items_per_iter * 1000 / median (0 if median is 0)

    def to_dict(self) -> dict[str, float | int]:
        """Plain dict for JSON (the ``summary`` block of a bench result)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, float | int]) -> Summary:
        """Inverse of :meth:`to_dict`; extra keys are an error."""
        return cls(**data)


def _as_samples(samples_ms: Samples, name: str = "samples_ms", positive: bool = False) -> np.ndarray:
    """Validate latencies and return them as a 1-D float64 array."""
    arr = np.asarray(samples_ms, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of latencies in ms, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: time at least one iteration before summarising")
    if not np.all(np.isfinite(arr)):
        bad = arr[~np.isfinite(arr)][0]
        raise ValueError(f"{name} contains a non-finite latency ({bad}); check the timer")
    lowest = float(arr.min())
    if lowest < 0 or (positive and lowest == 0):
        need = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} contains a latency of {lowest} ms; latencies must be {need}")
    return arr


def summarize(samples_ms: Samples, items_per_iter: int = 1) -> Summary:
    """Summarise latencies ``(N,)`` in ms.

    ``items_per_iter`` is how many items (images, episodes) one iteration processes, e.g. the
    batch size; throughput is computed at the median latency, which is robust to stragglers.
    """
    arr = _as_samples(samples_ms)
    if items_per_iter < 1:
        raise ValueError(f"items_per_iter must be >= 1, got {items_per_iter}")
    median, p90, p95, p99 = (float(v) for v in np.percentile(arr, [50, 90, 95, 99]))
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return Summary(
        n=int(arr.size),
        median=median,
        p90=p90,
        p95=p95,
        p99=p99,
        mean=mean,
        std=std,
        cv=std / mean if mean > 0 else 0.0,
        min=float(arr.min()),
        max=float(arr.max()),
        throughput=items_per_iter * 1000.0 / median if median > 0 else 0.0,
    )


def high_variance(summary: Summary, threshold: float = 0.10) -> str | None:
    """Return a warning when the coefficient of variation exceeds ``threshold``, else None.

    Like trtexec's "coefficient of variance" warning: a high CV means the machine was busy or
    clocks were changing, so single numbers (and small differences) should not be trusted.
    """
    if summary.cv <= threshold:
        return None
    return (
        f"high variance: coefficient of variation {summary.cv:.1%} exceeds {threshold:.0%} "
        f"(n={summary.n}, median {summary.median:.3f} ms, std {summary.std:.3f} ms); the machine "
        "may be busy or throttling. Close other programs, lock clocks, or measure longer "
        "before trusting this number."
    )


class RankTest(NamedTuple):
    """Result of a one-sided Mann-Whitney U test."""

    statistic: float  # U statistic of the second argument (candidate)
    pvalue: float  # one-sided p-value


# Below this many pairs (n1 * n2) the exact null distribution of U is used when there are no ties
# (about 15 ms at 100 x 100; 6 s at 400 x 400). scipy's own choice stops at 8 samples a side, where
# the normal approximation's smallest p (2e-4 at 9 x 9) is larger than the exact one at 8 x 8
# (8e-5): more rounds could then reach less, and min_rounds() would not be a threshold.
EXACT_MAX_PAIRS = 10_000


def _exact(n1: int, n2: int, ties: bool) -> bool:
    """Whether :func:`mann_whitney` uses the exact distribution of U for these sizes."""
    return not ties and (min(n1, n2) <= 8 or n1 * n2 <= EXACT_MAX_PAIRS)


def mann_whitney(a: Samples, b: Samples, alternative: str = "greater") -> RankTest:
    """One-sided Mann-Whitney U test of baseline ``a`` against candidate ``b``.

    ``alternative="greater"`` (default) tests "``b`` is slower than ``a``" (larger latencies);
    ``"less"`` tests "``b`` is faster". Uses :func:`scipy.stats.mannwhitneyu`: the exact
    distribution of U without ties when a side has at most 8 samples or there are at most
    :data:`EXACT_MAX_PAIRS` pairs, else the normal approximation (continuity and tie corrected).
    """
    if alternative not in ("greater", "less"):
        raise ValueError(f"alternative must be 'greater' or 'less', got {alternative!r}")
    try:
        from scipy.stats import mannwhitneyu
    except ImportError as exc:  # scipy is needed only for comparisons
        raise ImportError("comparing benchmarks needs scipy: pip install scipy") from exc
    base = _as_samples(a, "baseline")
    cand = _as_samples(b, "candidate")
    ties = np.unique(np.concatenate([base, cand])).size < base.size + cand.size
    method = "exact" if _exact(base.size, cand.size, ties) else "asymptotic"
    res = mannwhitneyu(cand, base, alternative=alternative, method=method)
    pvalue = float(res.pvalue)
    # all-equal inputs give nan in some scipy versions: "no evidence" is p = 1
    return RankTest(float(res.statistic), 1.0 if math.isnan(pvalue) else pvalue)


def smallest_p_value(n1: int, n2: int) -> float:
    """The smallest one-sided p :func:`mann_whitney` can return for ``n1`` baseline and ``n2``
    candidate samples without ties: every candidate sample beyond every baseline sample.

    Exact test: under "no difference" each of the ``C(n1 + n2, n1)`` orderings of the pooled
    samples is equally likely, and the most extreme one is a single ordering, so
    ``p = 1 / C(n1 + n2, n1)`` (3 vs 3: 1/20 = 0.05; 5 vs 5: 1/252). Where the normal
    approximation is used (see :data:`EXACT_MAX_PAIRS`), its p at ``U = n1 * n2``.
    """
    if n1 < 1 or n2 < 1:
        raise ValueError(f"need at least one sample a side, got {n1} and {n2}")
    if _exact(n1, n2, ties=False):
        return 1.0 / math.comb(n1 + n2, n1)
    pairs = n1 * n2
    sigma = math.sqrt(pairs * (n1 + n2 + 1) / 12.0)
    z = (pairs / 2.0 - 0.5) / sigma  # U - mean - continuity correction, over the sd
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def can_reach(alpha: float, n1: int, n2: int) -> bool:
    """Whether ``n1`` vs ``n2`` samples can give ``p < alpha`` (the rule is strict: p == alpha is not significant)."""
    return smallest_p_value(n1, n2) < alpha


def min_rounds(alpha: float, limit: int = 10_000) -> int:
    """The fewest samples per side (equal sides) that can give ``p < alpha``.

    alpha 0.05 -> 4 (3 vs 3 reaches exactly 0.05, which is not below it); 0.01 -> 5 (4 vs 4:
    1/70 = 0.014); 0.001 -> 7 (6 vs 6: 1/924 = 0.0011).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), e.g. 0.01, got {alpha}")
    for n in range(1, limit + 1):
        if can_reach(alpha, n, n):
            return n
    raise ValueError(f"alpha {alpha} cannot be reached with up to {limit} samples a side; use a larger alpha")


class TooFewSamples(ValueError):
    """The rank test could not flag a regression whatever the samples: too few of them for ``alpha``."""

    def __init__(self, alpha: float, sizes: list[tuple[str, int, int]]) -> None:
        self.alpha, self.sizes, self.needed = alpha, sizes, min_rounds(alpha)
        listed = ", ".join(f"{name} {n1}/{n2}".strip() for name, n1, n2 in sizes[:3])
        more = f" (+{len(sizes) - 3} more)" if len(sizes) > 3 else ""
        worst = max(smallest_p_value(n1, n2) for _, n1, n2 in sizes)
        super().__init__(
            f"too few samples for alpha {alpha}: {listed}{more} (baseline/candidate); the smallest p a one-sided "
            f"Mann-Whitney U test can give there is {worst:.3g}, not below {alpha}, so it could not flag a regression. "
            f"Measure at least {self.needed} rounds (samples) per side, or judge by the median ratio alone "
            "(--allow-ratio-only)"
        )


def bootstrap_median_ratio(
    a: Samples, b: Samples, n_boot: int = 2000, seed: int = 0, ci: float = 0.95
) -> tuple[float, float, float]:
    """Median ratio ``median(b) / median(a)`` with a percentile bootstrap CI.

    Each side is resampled independently with replacement ``n_boot`` times (seeded, so the
    result is reproducible). Returns ``(ratio, lo, hi)``; ratio > 1 means ``b`` is slower.
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), e.g. 0.95, got {ci}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    base = _as_samples(a, "baseline", positive=True)
    cand = _as_samples(b, "candidate", positive=True)
    rng = np.random.default_rng(seed)
    # (n_boot, n) index draws; medians along the sample axis give (n_boot,) per side
    base_med = np.median(base[rng.integers(0, base.size, (n_boot, base.size))], axis=1)
    cand_med = np.median(cand[rng.integers(0, cand.size, (n_boot, cand.size))], axis=1)
    lo, hi = np.quantile(cand_med / base_med, [(1 - ci) / 2, (1 + ci) / 2])
    return float(np.median(cand) / np.median(base)), float(lo), float(hi)


class Status(str, Enum):
    """Outcome of comparing a candidate against a baseline."""

    IMPROVED = "improved"
    UNCHANGED = "unchanged"
    SLOWER_NOT_SIGNIFICANT = "slower-but-not-significant"
    REGRESSION = "regression"


@dataclass(frozen=True)
class Verdict:
    """Comparison of candidate latencies against baseline latencies (see :func:`is_regression`)."""

    status: Status
    ratio: float  # median(candidate) / median(baseline); > 1 means slower
    ci_low: float  # bootstrap CI of the ratio (reported, not used by the rule)
    ci_high: float
    ci_level: float  # e.g. 0.95
    p_value: float  # one-sided Mann-Whitney p for "candidate slower"
    p_faster: float  # one-sided Mann-Whitney p for "candidate faster"
    n_baseline: int
    n_candidate: int
    baseline_median: float  # ms
    candidate_median: float  # ms
    max_slowdown: float  # tolerated fractional slowdown, e.g. 0.10
    alpha: float  # significance level
    reason: str  # one sentence for people
    ratio_only: bool = False  # decided by the ratio alone: too few samples for p < alpha (allow_ratio_only)

    @property
    def is_regression(self) -> bool:
        """True only for :attr:`Status.REGRESSION`."""
        return self.status is Status.REGRESSION

    def to_dict(self) -> dict[str, object]:
        """Plain dict for JSON, with ``status`` as its string value."""
        data = asdict(self)
        data["status"] = self.status.value
        return data


def is_regression(
    baseline: Samples,
    candidate: Samples,
    max_slowdown: float = 0.10,
    alpha: float = 0.01,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
    allow_ratio_only: bool = False,
) -> Verdict:
    """Decide whether ``candidate`` latencies regress against ``baseline`` latencies (ms).

    The rule (asv-style: a factor **and** a significant rank test), with
    ``r = median(candidate) / median(baseline)`` and ``f = 1 + max_slowdown``:

    - **regression**: ``r > f`` and the one-sided Mann-Whitney U test "candidate slower"
      gives ``p < alpha``;
    - **slower-but-not-significant**: ``r > f`` but ``p >= alpha`` (samples too noisy, or too close);
    - **improved**: ``r < 1 / f`` and the one-sided test "candidate faster" gives ``p < alpha``;
    - **unchanged**: everything else, including slowdowns within the tolerance however
      significant they are.

    The bootstrap CI of ``r`` is computed and reported for people to read; it does not take
    part in the decision, so exactly one significance test decides.

    A gate that cannot fail is refused: when no ordering of ``n1`` vs ``n2`` samples can give
    ``p < alpha`` (:func:`can_reach`; 3 vs 3 at alpha 0.01), :class:`TooFewSamples` is raised,
    or with ``allow_ratio_only`` the ratio alone decides (regression when ``r > f``, improved when
    ``r < 1 / f``) and the verdict says so (``ratio_only``, and in ``reason``).
    """
    if max_slowdown < 0:
        raise ValueError(f"max_slowdown must be >= 0 (a fraction, 0.10 == 10 %), got {max_slowdown}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), e.g. 0.01, got {alpha}")
    base = _as_samples(baseline, "baseline", positive=True)
    cand = _as_samples(candidate, "candidate", positive=True)
    reachable = can_reach(alpha, base.size, cand.size)
    if not reachable and not allow_ratio_only:
        raise TooFewSamples(alpha, [("", int(base.size), int(cand.size))])
    ratio, lo, hi = bootstrap_median_ratio(base, cand, n_boot=n_boot, seed=seed, ci=ci)
    p_slower = mann_whitney(base, cand, "greater").pvalue
    p_faster = mann_whitney(base, cand, "less").pvalue
    factor = 1.0 + max_slowdown
    change = f"{abs(ratio - 1):.1%} {'slower' if ratio >= 1 else 'faster'}"

    if not reachable:
        status = Status.REGRESSION if ratio > factor else Status.IMPROVED if ratio < 1.0 / factor else Status.UNCHANGED
        reason = (
            f"{change} (tolerance {max_slowdown:.0%}), judged by the ratio alone: "
            f"{base.size}/{cand.size} samples cannot reach p < {alpha} (smallest p "
            f"{smallest_p_value(base.size, cand.size):.3g}; {min_rounds(alpha)} a side can)"
        )
    elif ratio > factor and p_slower < alpha:
        status = Status.REGRESSION
        reason = f"{change} (> {max_slowdown:.0%} tolerated) and significant (p={p_slower:.2g} < {alpha})"
    elif ratio > factor:
        status = Status.SLOWER_NOT_SIGNIFICANT
        reason = (
            f"{change} (> {max_slowdown:.0%} tolerated) but not significant (p={p_slower:.2g} >= "
            f"{alpha}); collect more samples or interleave A/B runs"
        )
    elif ratio < 1.0 / factor and p_faster < alpha:
        status = Status.IMPROVED
        reason = f"{change} and significant (p={p_faster:.2g} < {alpha})"
    else:
        status = Status.UNCHANGED
        p_dir = p_slower if ratio >= 1 else p_faster
        reason = f"{change}, within the {max_slowdown:.0%} tolerance or not significant (p={p_dir:.2g})"
    return Verdict(
        status=status,
        ratio=ratio,
        ci_low=lo,
        ci_high=hi,
        ci_level=ci,
        p_value=p_slower,
        p_faster=p_faster,
        n_baseline=int(base.size),
        n_candidate=int(cand.size),
        baseline_median=float(np.median(base)),
        candidate_median=float(np.median(cand)),
        max_slowdown=max_slowdown,
        alpha=alpha,
        reason=reason,
        ratio_only=not reachable,
    )
