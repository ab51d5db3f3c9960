"""compare(), exit codes, the rich table, JUnit XML and the interleaved A/B runner."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from icpd.benchmarks.ab import run_ab
from icpd.benchmarks.compare import (
    ResultKey,
    compare,
    exit_code,
    render_table,
    split_variants,
    to_junit_xml,
)
from icpd.benchmarks.schema import make_document, make_result
from icpd.benchmarks.stats import Status

ENV = {"cpu_model": "test cpu"}


def result(scenario: str, stage: str, scale: float, seed: int, **extra: Any) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    samples = (10.0 * scale * rng.lognormal(0, 0.05, 40)).tolist()
    return make_result(
        scenario=scenario, backend="ort-cpu", precision="fp32", stage=stage,
        batch=1, shots=5, classes=1, samples_ms=samples, **extra,
    )  # fmt: skip


@pytest.fixture
def docs() -> tuple[dict[str, Any], dict[str, Any]]:
    base = make_document(
        [
            result("a", "encoder", 1.0, 1),
            result("a", "end_to_end", 1.0, 2),
            result("old", "end_to_end", 1.0, 3),
        ],
        environment=ENV,
    )
    cand = make_document(
        [
            result("a", "encoder", 1.5, 4),
            result("a", "end_to_end", 1.0, 5),
            result("new", "end_to_end", 1.0, 6),
        ],
        environment=ENV,
    )
    return base, cand


def test_compare_matches_by_key_and_lists_unmatched(docs: tuple) -> None:
    res = compare(*docs, max_slowdown=0.10, alpha=0.01)
    by_stage = {p.key.stage: p.verdict.status for p in res.pairs}
    assert by_stage == {"encoder": Status.REGRESSION, "end_to_end": Status.UNCHANGED}
    assert res.only_baseline == [ResultKey("old", "ort-cpu", "fp32", "end_to_end", 1, 5, 1)]
    assert [k.scenario for k in res.only_candidate] == ["new"]
    assert exit_code(res) == 1


def test_exit_code_zero_without_regressions(docs: tuple) -> None:
    base, _ = docs
    assert exit_code(compare(base, base)) == 0
    faster = make_document([result("a", "encoder", 0.5, 7)], environment=ENV)
    res = compare(base, faster)
    assert [p.verdict.status for p in res.pairs] == [Status.IMPROVED] and exit_code(res) == 0


def test_duplicate_keys_are_an_error(docs: tuple) -> None:
    base, _ = docs
    dup = make_document([result("a", "encoder", 1.0, 1), result("a", "encoder", 1.0, 2)], environment=ENV)
    with pytest.raises(
        ValueError, match=r"two results for a/ort-cpu/fp32/encoder/b1-s5-c1 \(\$\.results\[1\]\)"
    ):
        compare(base, dup)


def test_split_variants_feeds_compare() -> None:
    ab = make_document(
        [
            result("a", "end_to_end", 1.0, 1, variant="baseline"),
            result("a", "end_to_end", 1.4, 2, variant="candidate"),
        ],
        environment=ENV,
    )
    base, cand = split_variants(ab)
    assert exit_code(compare(base, cand)) == 1
    with pytest.raises(ValueError, match="no results with variant 'pr'"):
        split_variants(ab, candidate="pr")


def test_render_table_shows_every_row(docs: tuple) -> None:
    console = Console(width=200, record=True)
    console.print(render_table(compare(*docs)))
    text = console.export_text()
    assert "regression" in text and "unchanged" in text
    assert "baseline only" in text and "candidate only" in text
    assert "icpd bench compare: ort-cpu fp32 b1-s5-c1," in text  # what every row shares, once
    lines = [line.strip() for line in text.splitlines()]
    assert {"a", "old", "new"} <= set(lines)  # group lines: the scenarios
    assert any(line.startswith("encoder ") for line in lines)


def _bench_doc(scale: float, backends: tuple[str, ...]) -> dict[str, Any]:
    """What `icpd bench` writes on a CPU machine: two backends, every scenario and stage."""
    rng = np.random.default_rng(0)
    plan = [("uncached", 1, 1, 1), ("uncached", 1, 5, 1), ("cached", 1, 1, 1), ("cached", 1, 5, 1),
            ("classes", 1, 1, 5), ("batch", 2, 1, 1)]
    results = []
    for backend in backends:
        for scenario, batch, shots, classes in plan:
            stages = ("support_encoding",) * (scenario == "uncached") + (
                "preprocessing", "encoder", "matcher", "postprocessing", "end_to_end")
            results += [make_result(scenario=scenario, backend=backend, precision="fp32", stage=stage, batch=batch,
                                    shots=shots, classes=classes,
                                    samples_ms=(1234.5 * scale * rng.lognormal(0, 0.3, 20)).tolist())
                        for stage in stages]
    return make_document(results, environment=ENV)


@pytest.mark.parametrize("backends", [("ort-cpu", "torch-cpu"), ("ort-cpu",)])
def test_render_table_is_readable_at_80_columns(backends: tuple[str, ...]) -> None:
    """Issue 20: at 80 columns names were cut to "uncache…". Every line fits, every group (scenario,
    backend, b-s-c) and stage name is on a line whole, every status word is whole, nothing is cut."""
    base, cand = _bench_doc(1.0, backends), _bench_doc(1.2, backends)
    cand["results"] = cand["results"][:-1]  # one result only in the baseline
    res = compare(base, cand, allow_ratio_only=False)
    console = Console(width=80, record=True)
    console.print(render_table(res))
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in text
    stripped = [line.strip() for line in lines]
    multi = len(backends) > 1
    for r in base["results"]:
        group = f"{r['scenario']}{' ' + r['backend'] if multi else ''} b{r['batch']}-s{r['shots']}-c{r['classes']}"
        assert group in stripped, group
        assert any(line.startswith(r["stage"] + " ") for line in stripped), r["stage"]
    assert ("icpd bench compare: fp32," if multi else "icpd bench compare: ort-cpu fp32,") in text
    words = {p.verdict.status for p in res.pairs}
    assert Status.REGRESSION in words or Status.SLOWER_NOT_SIGNIFICANT in words
    body = [line for line in stripped if line.split(" ")[0] in {r["stage"] for r in base["results"]}]
    assert len(body) == len(res.pairs) + 1  # one line per result: no row wrapped
    assert sum("baseline only" in line for line in body) == 1
    for line, pair in zip(body, res.pairs):
        assert line.endswith({"regression": "regression", "unchanged": "unchanged", "improved": "improved",
                              "slower-but-not-significant": "slower, p >= alpha"}[pair.verdict.status.value]), line


def test_junit_xml_parses_back(docs: tuple, tmp_path: Path) -> None:
    path = to_junit_xml(compare(*docs), tmp_path / "junit.xml")
    root = ET.parse(path).getroot()
    suite = root.find("testsuite")
    assert root.tag == "testsuites" and suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "2")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    encoder = cases["a/ort-cpu/fp32/encoder/b1-s5-c1"]
    failure = encoder.find("failure")
    assert failure is not None and failure.get("type") == "regression"
    assert "significant" in failure.get("message", "")
    assert cases["a/ort-cpu/fp32/end_to_end/b1-s5-c1"].find("failure") is None
    assert cases["old/ort-cpu/fp32/end_to_end/b1-s5-c1"].find("skipped") is not None


class Workload:
    """Fake callable that advances a fake clock and logs its name."""

    def __init__(self, name: str, cost_ms: float, clock: list[int], log: list[str]) -> None:
        self.name, self.cost_ns, self.clock, self.log = name, int(cost_ms * 1e6), clock, log

    def __call__(self) -> None:
        self.log.append(self.name)
        self.clock[0] += self.cost_ns


def test_run_ab_interleaves_in_seeded_random_order() -> None:
    clock, log = [0], []
    a, b = Workload("A", 2.0, clock, log), Workload("B", 3.0, clock, log)
    res = run_ab(a, b, rounds=20, warmup_rounds=2, seed=42, clock=lambda: clock[0])
    assert res.a_ms == [2.0] * 20 and res.b_ms == [3.0] * 20
    assert log[:4] == ["A", "B", "A", "B"]  # untimed warm-up of both sides
    measured = log[4:]
    assert ["".join(measured[i : i + 2]) for i in range(0, 40, 2)] == res.order  # each round runs both
    assert {"AB", "BA"} == set(res.order)  # both orders occur
    again = run_ab(a, b, rounds=20, warmup_rounds=0, seed=42, clock=lambda: clock[0])
    assert again.order == res.order  # seeded


def test_run_ab_iters_per_round_and_validation() -> None:
    clock, log = [0], []
    res = run_ab(Workload("A", 1, clock, log), Workload("B", 1, clock, log), rounds=3, iters_per_round=4,
                 warmup_rounds=0, clock=lambda: clock[0])  # fmt: skip
    assert len(res.a_ms) == len(res.b_ms) == 12
    with pytest.raises(ValueError, match="rounds"):
        run_ab(lambda: None, lambda: None, rounds=0)
