"""A gate that cannot fail is refused (issue 20): the smallest p of the rank test, the rounds an
alpha needs, p exactly at alpha, and what `bench compare`, `bench ab` and the CI script do."""

from __future__ import annotations

import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from icpd.benchmarks.compare import compare, exit_code, to_junit_xml, verdict_line
from icpd.benchmarks.schema import dump, make_document, make_result
from icpd.benchmarks.stats import (
    Status,
    TooFewSamples,
    can_reach,
    is_regression,
    mann_whitney,
    min_rounds,
    smallest_p_value,
)
from icpd.cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
BASE3 = [10.0, 10.5, 11.0]
SLOW3 = [30.0, 31.5, 33.0]  # 3x slower in every sample


@pytest.mark.parametrize(("n1", "n2"), [(1, 1), (1, 7), (3, 3), (4, 4), (5, 5), (3, 9), (8, 8), (9, 9), (12, 12),
                                        (30, 30), (100, 100), (101, 101), (9, 1200)])
def test_smallest_p_value_is_what_the_test_gives_at_full_separation(n1: int, n2: int) -> None:
    """Every candidate sample above every baseline sample is the most extreme ordering; the
    function must agree with the test the gate runs, exactly where it is exact (1 / C(n1+n2, n1))."""
    base, cand = np.arange(1.0, n1 + 1), np.arange(n1 + 1.0, n1 + n2 + 1)
    p = mann_whitney(base, cand).pvalue
    assert smallest_p_value(n1, n2) == pytest.approx(p, rel=1e-9)
    if n1 * n2 <= 10_000:  # exact distribution: one ordering out of C(n1 + n2, n1)
        assert smallest_p_value(n1, n2) == 1 / math.comb(n1 + n2, n1)
        assert p == pytest.approx(1 / math.comb(n1 + n2, n1), rel=1e-9)


def test_smallest_p_values_by_hand() -> None:
    assert smallest_p_value(3, 3) == 0.05  # 1/20
    assert smallest_p_value(4, 4) == 1 / 70
    assert smallest_p_value(5, 5) == 1 / 252
    assert smallest_p_value(2, 2) == 1 / 6


@pytest.mark.parametrize(("alpha", "rounds"), [(0.5, 2), (0.2, 2), (0.1, 3), (0.05, 4), (0.01, 5), (0.004, 5),
                                               (0.003, 6), (0.001, 7), (1e-4, 8), (1e-6, 12)])
def test_min_rounds_at_several_alphas(alpha: float, rounds: int) -> None:
    """By hand: 1/C(2n, n) < alpha first at n = rounds (0.05: 3 vs 3 gives exactly 0.05, not below;
    1e-6: 11 vs 11 gives 1/705432 = 1.4e-6, 12 vs 12 1/2704156 = 3.7e-7). The rank test the gate
    runs agrees at full separation: below alpha with `rounds` a side, not with one fewer."""
    assert min_rounds(alpha) == rounds
    top = [float(x) for x in range(rounds + 1, 2 * rounds + 1)]
    assert mann_whitney([float(x) for x in range(1, rounds + 1)], top).pvalue < alpha
    assert not can_reach(alpha, rounds - 1, rounds - 1)
    if rounds > 1:
        low = rounds - 1
        assert mann_whitney([float(x) for x in range(1, low + 1)],
                            [float(x) for x in range(low + 1, 2 * low + 1)]).pvalue >= alpha


def test_three_rounds_three_times_slower_is_not_no_regression() -> None:
    with pytest.raises(TooFewSamples, match=r"3/3 .*smallest p .* is 0\.05, not below 0\.01.*at least 5 rounds"):
        is_regression(BASE3, SLOW3)
    v = is_regression(BASE3, SLOW3, allow_ratio_only=True)
    assert v.status is Status.REGRESSION and v.is_regression and v.ratio_only
    assert v.ratio == pytest.approx(3.0) and "judged by the ratio alone" in v.reason and "5 a side can" in v.reason
    same = is_regression(BASE3, BASE3, allow_ratio_only=True)
    assert same.status is Status.UNCHANGED and same.ratio_only


def test_p_exactly_at_alpha_is_not_significant() -> None:
    """The rule is p < alpha. 4 vs 4 with one crossing: p = 2/70 exactly."""
    base, cand = [1.0, 2.0, 3.0, 5.0], [4.0, 6.0, 7.0, 8.0]
    alpha = 2 / 70
    v = is_regression(base, cand, alpha=alpha)
    assert v.p_value == alpha and v.ratio == pytest.approx(6.5 / 2.5)
    assert v.status is Status.SLOWER_NOT_SIGNIFICANT and not v.ratio_only
    assert is_regression(base, cand, alpha=math.nextafter(alpha, 1.0)).status is Status.REGRESSION
    # at the floor: 3 vs 3 reaches exactly 0.05 at best, so alpha 0.05 could never be met
    with pytest.raises(TooFewSamples, match="at least 4 rounds"):
        is_regression(BASE3, SLOW3, alpha=0.05)


def test_ties_at_the_boundary_do_not_make_a_gate_that_cannot_fail_pass() -> None:
    """Timer-resolution ties: scipy's tie-corrected normal approximation gives 3 vs 3 a p of 0.023,
    below 0.05, where no exact ordering can (1/20). The gate judges by the sample counts."""
    assert mann_whitney([1.0] * 3, [2.0] * 3).pvalue < 0.05
    with pytest.raises(TooFewSamples):
        is_regression([1.0] * 3, [2.0] * 3, alpha=0.05)
    v = is_regression([1.0] * 4, [2.0] * 4, alpha=0.05)  # 4 a side can: a regression
    assert v.status is Status.REGRESSION and not v.ratio_only


def _docs(tmp_path: Path, n: int, scale: float) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)

    def doc(s: float) -> dict:
        return make_document([make_result(scenario="cached", backend="ort-cpu", precision="fp32", stage="end_to_end",
                                           batch=1, shots=1, classes=1,
                                           samples_ms=(10 * s * rng.lognormal(0, 0.02, n)).tolist())],
                             environment={})

    return dump(doc(1.0), tmp_path / "base.json"), dump(doc(scale), tmp_path / "cand.json")


def test_compare_refuses_or_says_ratio_only(tmp_path: Path) -> None:
    base, cand = _docs(tmp_path, 3, 3.0)
    res = runner.invoke(app, ["bench", "compare", str(base), str(cand)])
    assert res.exit_code == 2, res.output
    assert "error: too few samples for alpha 0.01: cached/ort-cpu/fp32/end_to_end/b1-s1-c1 3/3" in res.output
    assert "at least 5 rounds" in res.output and "no significant regression" not in res.output
    res = runner.invoke(app, ["bench", "compare", str(base), str(cand), "--allow-ratio-only"])
    assert res.exit_code == 1, res.output
    assert "RATIO ONLY for 1 of 1 result(s): 3/3 samples cannot reach p < 0.01, 5 per side can" in res.output
    assert "regression (ratio)" in res.output and "(ratio): judged by the median ratio alone" in res.output
    same, _ = _docs(tmp_path, 3, 1.0)
    res = runner.invoke(app, ["bench", "compare", str(base), str(same), "--allow-ratio-only"])
    assert res.exit_code == 0 and "no regression beyond the tolerance; RATIO ONLY" in res.output, res.output
    base, cand = _docs(tmp_path, 5, 3.0)  # 5 a side: the rank test decides
    res = runner.invoke(app, ["bench", "compare", str(base), str(cand)])
    assert res.exit_code == 1 and "1 significant regression(s)" in res.output and "RATIO ONLY" not in res.output


def test_compare_lists_every_short_pair(tmp_path: Path) -> None:
    def doc(n: int, s: float) -> dict:
        return make_document([make_result(scenario=sc, backend="ort-cpu", precision="fp32", stage="end_to_end", batch=1,
                                          shots=1, classes=1, samples_ms=[s * (10 + i) for i in range(n)])
                              for sc in ("a", "b")], environment={})
    with pytest.raises(TooFewSamples,
                       match=r"a/ort-cpu/fp32/end_to_end/b1-s1-c1 4/4, b/ort-cpu/fp32/end_to_end/b1-s1-c1 4/4"):
        compare(doc(4, 1.0), doc(4, 3.0))
    res = compare(doc(4, 1.0), doc(4, 3.0), allow_ratio_only=True)
    assert exit_code(res) == 1 and all(p.verdict.ratio_only for p in res.pairs)
    assert verdict_line(res).startswith("2 regression(s): a/ort-cpu/fp32/end_to_end/b1-s1-c1 (x3.00, ratio only)")
    failures = ET.parse(to_junit_xml(res, tmp_path / "j.xml")).getroot().iter("failure")
    assert [f.get("type") for f in failures] == ["regression (ratio only)"] * 2


def test_bench_ab_refuses_too_few_rounds_before_timing(tmp_path: Path) -> None:
    # model dirs that do not exist: the rounds are refused first, in no time
    res = runner.invoke(app, ["bench", "ab", str(tmp_path / "a"), str(tmp_path / "b"), "--rounds", "4"])
    assert res.exit_code == 2, res.output
    assert "error: --rounds 4: with --alpha 0.01 the rank test cannot flag a regression" in res.output
    assert "use --rounds 5 or more, or --allow-ratio-only" in res.output
    res = runner.invoke(app, ["bench", "ab", str(tmp_path / "a"), str(tmp_path / "b"),
                              "--rounds", "4", "--alpha", "0.05"])
    assert res.exit_code == 2 and "--rounds 4" not in res.output  # 4 a side reach 0.05: on to the model dirs


def test_bench_ab_ratio_only_runs_and_says_so(tiny_model_dir) -> None:
    res = runner.invoke(app, ["bench", "ab", str(tiny_model_dir), str(tiny_model_dir), "--backend", "ort",
                              "--rounds", "3", "--allow-ratio-only", "--max-slowdown", "50%"])
    assert res.exit_code in (0, 1), res.output
    assert "RATIO ONLY for 1 of 1 result(s): 3/3 samples" in res.output


def test_ci_latency_check_refuses_too_few_rounds_and_its_defaults_can_fail() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "ci_latency_check.py"),
                           "--rounds", "3", "--alpha", "0.05"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--rounds 3: with --alpha 0.05 the rank test cannot flag a regression" in proc.stderr
    assert "use --rounds 4 or more" in proc.stderr
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import ci_latency_check
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    args = ci_latency_check.build_parser().parse_args([])  # what .ci/run uses
    assert can_reach(args.alpha, args.rounds, args.rounds) and args.rounds >= min_rounds(args.alpha)
