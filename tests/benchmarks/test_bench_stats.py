"""Statistics on synthetic latencies with known shifts (seeded, so every count is deterministic)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from icpd.benchmarks.stats import (
    Status,
    Summary,
    bootstrap_median_ratio,
    high_variance,
    is_regression,
    mann_whitney,
    summarize,
)

TRIALS = 100
N = 30  # samples per side, a --quick run


def latencies(
    rng: np.random.Generator, n: int = N, median_ms: float = 10.0, sigma: float = 0.1
) -> np.ndarray:
    """Latency-like noise: lognormal around ``median_ms`` plus ~5% slow outliers (1.5-3x)."""
    x = median_ms * rng.lognormal(0.0, sigma, n)
    outliers = rng.random(n) < 0.05
    return np.where(outliers, x * rng.uniform(1.5, 3.0, n), x)


def count_status(slowdown: float, *, max_slowdown: float = 0.10, alpha: float = 0.01, n: int = N) -> dict:
    counts: dict[Status, int] = {s: 0 for s in Status}
    for seed in range(TRIALS):
        rng = np.random.default_rng(seed)
        base = latencies(rng, n)
        cand = latencies(rng, n) * slowdown
        counts[is_regression(base, cand, max_slowdown, alpha, n_boot=500).status] += 1
    return counts


# --- summary --------------------------------------------------------------------------


def test_summarize_matches_numpy() -> None:
    x = np.arange(1.0, 101.0)  # 1..100 ms
    s = summarize(x, items_per_iter=4)
    assert s.n == 100
    assert s.median == pytest.approx(50.5)
    assert s.p90 == pytest.approx(np.percentile(x, 90)) == pytest.approx(90.1)
    assert s.p95 == pytest.approx(95.05)
    assert s.p99 == pytest.approx(99.01)
    assert s.mean == pytest.approx(50.5)
    assert s.std == pytest.approx(np.std(x, ddof=1))
    assert s.cv == pytest.approx(np.std(x, ddof=1) / 50.5)
    assert (s.min, s.max) == (1.0, 100.0)
    assert s.throughput == pytest.approx(4 * 1000 / 50.5)  # items/s at the median


def test_summarize_single_sample_and_roundtrip() -> None:
    s = summarize([5.0])
    assert (s.n, s.median, s.std, s.cv, s.throughput) == (1, 5.0, 0.0, 0.0, 200.0)
    assert Summary.from_dict(s.to_dict()) == s


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [1.0, -2.0], [[1.0, 2.0]]])
def test_summarize_rejects_bad_samples(bad: list) -> None:
    with pytest.raises(ValueError, match="samples_ms"):
        summarize(bad)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.001, 1e4, allow_nan=False), min_size=1, max_size=200))
def test_summary_is_ordered(x: list[float]) -> None:
    s = summarize(x)
    tol = 1e-9 * s.max
    assert s.min - tol <= s.median <= s.p90 + tol <= s.p95 + 2 * tol <= s.p99 + 3 * tol <= s.max + 4 * tol
    assert s.min - tol <= s.mean <= s.max + tol


def test_high_variance_warns_only_above_threshold() -> None:
    steady = summarize([10.0, 10.1, 9.9, 10.0])
    noisy = summarize([5.0, 15.0, 10.0, 10.0])
    assert high_variance(steady) is None
    warning = high_variance(noisy, threshold=0.10)
    assert warning is not None and "coefficient of variation" in warning and "40.8%" in warning


# --- tests and bootstrap ----------------------------------------------------------------


def test_mann_whitney_direction() -> None:
    rng = np.random.default_rng(0)
    base = latencies(rng)
    slower = base * 1.5
    assert mann_whitney(base, slower).pvalue < 1e-6  # default: candidate slower
    assert mann_whitney(base, slower, "less").pvalue > 0.99
    assert mann_whitney([3.0] * 5, [3.0] * 5).pvalue == pytest.approx(1.0)  # all ties: no evidence


def test_bootstrap_ratio_is_seeded_and_brackets_truth() -> None:
    rng = np.random.default_rng(1)
    base, cand = latencies(rng, 200), latencies(rng, 200) * 1.2
    ratio, lo, hi = bootstrap_median_ratio(base, cand, n_boot=1000, seed=3)
    assert lo < 1.2 < hi and lo < ratio < hi
    assert bootstrap_median_ratio(base, cand, n_boot=1000, seed=3) == (ratio, lo, hi)
    narrow = bootstrap_median_ratio(base, cand, n_boot=1000, seed=3, ci=0.5)
    assert lo < narrow[1] < narrow[2] < hi


# --- the regression rule ------------------------------------------------------------------


def test_detects_20_percent_slowdown() -> None:
    counts = count_status(1.20)
    # measured: 100/100 with this seed set; the bar is the brief's 95
    assert counts[Status.REGRESSION] >= 95, counts


def test_identical_distributions_are_not_flagged() -> None:
    counts = count_status(1.0)
    assert counts[Status.REGRESSION] == 0, counts
    assert counts[Status.UNCHANGED] >= 95, counts


def test_rank_test_alone_is_calibrated() -> None:
    """With no ratio tolerance the gate is the U test alone: false alarms near alpha (1%)."""
    counts = count_status(1.0, max_slowdown=0.0)
    assert counts[Status.REGRESSION] <= 5, counts


def test_improvement_is_never_a_regression() -> None:
    counts = count_status(0.75)
    assert counts[Status.REGRESSION] == 0 and counts[Status.SLOWER_NOT_SIGNIFICANT] == 0
    assert counts[Status.IMPROVED] >= 95, counts


def test_small_significant_slowdown_below_threshold_is_not_a_regression() -> None:
    rng = np.random.default_rng(7)
    base = latencies(rng, 2000, sigma=0.02)
    cand = latencies(rng, 2000, sigma=0.02) * 1.05
    verdict = is_regression(base, cand, max_slowdown=0.10, alpha=0.01)
    assert verdict.p_value < 1e-10  # clearly significant ...
    assert verdict.ratio == pytest.approx(1.05, abs=0.01)  # ... but 5% < 10% tolerated
    assert verdict.status is Status.UNCHANGED and not verdict.is_regression
    assert "within the 10% tolerance" in verdict.reason


def test_large_but_noisy_slowdown_is_not_significant() -> None:
    # 6 per side (enough to reach p < 0.01: 1/924), but the samples overlap: p = 0.44
    verdict = is_regression([10.0, 12.0, 30.0, 11.0, 13.0, 28.0], [14.0, 11.0, 40.0, 15.0, 16.0, 9.0])
    assert verdict.ratio == pytest.approx(14.5 / 12.5) and verdict.p_value > 0.4
    assert verdict.status is Status.SLOWER_NOT_SIGNIFICANT
    assert "not significant" in verdict.reason


def test_verdict_fields() -> None:
    rng = np.random.default_rng(11)
    base, cand = latencies(rng), latencies(rng) * 1.3
    v = is_regression(base, cand)
    assert v.status is Status.REGRESSION and v.is_regression
    assert (v.n_baseline, v.n_candidate) == (N, N)
    assert v.ci_low < v.ratio < v.ci_high and v.ci_level == 0.95
    assert v.ratio == pytest.approx(np.median(cand) / np.median(base))
    assert "slower" in v.reason and "significant" in v.reason
    assert v.to_dict()["status"] == "regression"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"max_slowdown": -0.1}, "max_slowdown"), ({"alpha": 0.0}, "alpha"), ({"alpha": 1.5}, "alpha")],
)
def test_is_regression_rejects_bad_parameters(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        is_regression([1.0, 2.0], [1.0, 2.0], **kwargs)


def test_zero_latency_cannot_form_a_ratio() -> None:
    with pytest.raises(ValueError, match="baseline.*must be > 0"):
        is_regression([0.0, 1.0], [1.0, 2.0])
