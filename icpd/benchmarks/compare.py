"""Compare two bench documents (or the two sides of an A/B run) and gate CI on regressions.

Results are matched by :data:`~icpd.benchmarks.schema.KEY_FIELDS`; each pair gets a
:class:`~icpd.benchmarks.stats.Verdict` from :func:`~icpd.benchmarks.stats.is_regression`.
:func:`icpd.benchmarks.ab.run_ab` interleaves A and B in one process so both see the same machine state, which
cuts false alarms on shared CI runners (asv measured ~12% -> ~4%).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from icpd.benchmarks.schema import KEY_FIELDS
from icpd.benchmarks.stats import Status, TooFewSamples, Verdict, can_reach, is_regression, min_rounds

if TYPE_CHECKING:
    from rich.console import RenderableType

__all__ = [
    "CompareResult",
    "Pair",
    "ResultKey",
    "compare",
    "exit_code",
    "incomparable",
    "render_table",
    "split_variants",
    "table_names",
    "to_junit_xml",
    "verdict_line",
]


class ResultKey(NamedTuple):
    """What identifies a result across documents."""

    scenario: str
    backend: str
    precision: str
    stage: str
    batch: int
    shots: int
    classes: int

    @property
    def label(self) -> str:
        """Short human-readable name, e.g. ``5shot/ort-cpu/fp32/end_to_end/b1-s5-c1``."""
        return (
            f"{self.scenario}/{self.backend}/{self.precision}/{self.stage}/"
            f"b{self.batch}-s{self.shots}-c{self.classes}"
        )


@dataclass(frozen=True)
class Pair:
    """A result present on both sides, with its verdict."""

    key: ResultKey
    verdict: Verdict


@dataclass(frozen=True)
class CompareResult:
    """Everything :func:`compare` found."""

    pairs: list[Pair]
    only_baseline: list[ResultKey]  # results the candidate lacks
    only_candidate: list[ResultKey]  # results the baseline lacks
    max_slowdown: float
    alpha: float

    @property
    def regressions(self) -> list[Pair]:
        """Pairs whose verdict is a regression."""
        return [p for p in self.pairs if p.verdict.is_regression]


def _index(doc: Mapping[str, Any], side: str) -> dict[ResultKey, list[float]]:
    """Map each result's key to its samples; a key seen twice is an error."""
    out: dict[ResultKey, list[float]] = {}
    for i, result in enumerate(doc["results"]):
        key = ResultKey(*(result[f] for f in KEY_FIELDS))
        if key in out:
            raise ValueError(
                f"{side} document has two results for {key.label} ($.results[{i}]); "
                "give them different scenario names or split the document"
            )
        out[key] = result["samples"]
    return out


def compare(
    baseline_doc: Mapping[str, Any],
    candidate_doc: Mapping[str, Any],
    max_slowdown: float = 0.10,
    alpha: float = 0.01,
    *,
    seed: int = 0,
    allow_ratio_only: bool = False,
) -> CompareResult:
    """Match results by key and judge each pair with :func:`~icpd.benchmarks.stats.is_regression`.

    Both documents must already be valid (see :func:`~icpd.benchmarks.schema.load`).

    Raises:
        TooFewSamples: a pair has too few samples for the rank test to reach ``p < alpha`` (it
            could not fail), naming every such pair and the rounds needed; unless
            ``allow_ratio_only``, which judges those pairs by the median ratio alone.
    """
    base = _index(baseline_doc, "baseline")
    cand = _index(candidate_doc, "candidate")
    common = [key for key in base if key in cand]
    short = [(key.label, len(base[key]), len(cand[key])) for key in common
             if not can_reach(alpha, len(base[key]), len(cand[key]))]
    if short and not allow_ratio_only:
        raise TooFewSamples(alpha, short)
    pairs = [
        Pair(key, is_regression(base[key], cand[key], max_slowdown, alpha, seed=seed,
                                allow_ratio_only=allow_ratio_only))
        for key in common
    ]
    return CompareResult(
        pairs=pairs,
        only_baseline=[k for k in base if k not in cand],
        only_candidate=[k for k in cand if k not in base],
        max_slowdown=max_slowdown,
        alpha=alpha,
    )


def split_variants(
    doc: Mapping[str, Any], baseline: str = "baseline", candidate: str = "candidate"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split an A/B document (results tagged ``"variant"``) into baseline and candidate documents."""
    found = sorted({str(r.get("variant")) for r in doc["results"]})
    sides = []
    for name in (baseline, candidate):
        results = [r for r in doc["results"] if r.get("variant") == name]
        if not results:
            raise ValueError(
                f"A/B document has no results with variant {name!r} (variants found: {found}); "
                "was it written by `icpd bench ab`?"
            )
        sides.append({**doc, "results": results})
    return sides[0], sides[1]


def exit_code(result: CompareResult) -> int:
    """1 if any pair is a significant regression, else 0 (missing results do not fail)."""
    return 1 if result.regressions else 0


_STATUS_STYLE = {
    Status.IMPROVED: "green",
    Status.UNCHANGED: "",
    Status.SLOWER_NOT_SIGNIFICANT: "yellow",
    Status.REGRESSION: "bold red",
}
# the table's words for a status (spaces, so a narrow column wraps them whole); JSON and JUnit keep Status values
_STATUS_WORDS = {
    Status.IMPROVED: "improved",
    Status.UNCHANGED: "unchanged",
    Status.SLOWER_NOT_SIGNIFICANT: "slower, p >= alpha",
    Status.REGRESSION: "regression",
}
_KEY_PARTS = ("scenario", "backend", "precision", "stage", "bsc")


def _parts(key: ResultKey) -> dict[str, str]:
    return {"scenario": key.scenario, "backend": key.backend, "precision": key.precision, "stage": key.stage,
            "bsc": f"b{key.batch}-s{key.shots}-c{key.classes}"}


def table_names(keys: list[ResultKey]) -> tuple[str, list[tuple[str, str]]]:
    """What the 80-column table writes for each key: the parts shared by every key once (returned
    first, e.g. ``"ort-cpu fp32 b1-s5-c1"``), then per key its group (the varying parts but the
    stage, e.g. ``"uncached torch-cpu"``; "" when only stages vary) and its row name, the stage
    (at most 16 characters: a group line is as wide as the table, a row name never is cut)."""
    parts = [_parts(k) for k in keys]
    varying = [f for f in _KEY_PARTS if len({p[f] for p in parts}) > 1]
    common = " ".join(parts[0][f] for f in _KEY_PARTS if f not in varying) if parts else ""
    return common, [(" ".join(p[f] for f in varying if f != "stage"), p["stage"]) for p in parts]


def render_table(result: CompareResult) -> RenderableType:
    """Verdicts that stay readable at 80 columns: the key parts every result shares are said once
    in the title; results are grouped (a bold line: the scenario, backend, ... that vary) with one
    row per stage, and no name is ever cut. ratio = candidate / baseline median, with its
    bootstrap CI; p is the one-sided Mann-Whitney U p for "slower". One table per group, with
    the same column widths, so the group lines may be longer than the name column."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from icpd.benchmarks.report import _ms

    keys = [p.key for p in result.pairs] + result.only_baseline + result.only_candidate
    common, names = table_names(keys)
    sizes = {(p.verdict.n_baseline, p.verdict.n_candidate) for p in result.pairs}
    n_col = len(sizes) > 1
    n_note = "" if n_col or not sizes else "n {}/{}, ".format(*next(iter(sizes)))
    headers = ["benchmark", "base", "cand", "ratio", "CI", "p", *(["n"] if n_col else []), "status"]
    rows: list[tuple[str, list[str], Text]] = []  # (group, cells without status, status)
    for pair, (grp, name) in zip(result.pairs, names):
        v = pair.verdict
        word = _STATUS_WORDS[v.status] + (" (ratio)" if v.ratio_only else "")
        cells = [("  " if grp else "") + name, _ms(v.baseline_median), _ms(v.candidate_median), f"{v.ratio:.3f}",
                 f"{v.ci_low:.2f}-{v.ci_high:.2f}", f"{v.p_value:.2g}",
                 *([f"{v.n_baseline}/{v.n_candidate}"] if n_col else [])]
        rows.append((grp, cells, Text(word, style=_STATUS_STYLE[v.status])))
    unmatched = ([("baseline only", k) for k in result.only_baseline]
                 + [("candidate only", k) for k in result.only_candidate])
    for (side, _), (grp, name) in zip(unmatched, names[len(result.pairs):]):
        rows.append((grp, [("  " if grp else "") + name] + [""] * (len(headers) - 2), Text(side, style="dim")))
    widths = [max(len(h), *(len(cells[i]) for _, cells, _ in rows)) + (i == 0) for i, h in enumerate(headers[:-1])]
    status_width = min(20, max(len(status) for _, _, status in rows))  # 20: what 80 columns leave; longer ones wrap
    groups: dict[str, list[tuple[list[str], Text]]] = {}
    for grp, cells, status in rows:
        groups.setdefault(grp, []).append((cells, status))

    def table(title: str | None, header: bool) -> Table:
        t = Table(title=title, title_justify="left", title_style="bold", show_header=header, box=box.SIMPLE_HEAD,
                  show_edge=False, padding=(0, 0, 0, 1))
        for j, (head, width) in enumerate(zip(headers, widths)):
            t.add_column(head, justify="left" if j == 0 else "right", width=width, no_wrap=True)
        t.add_column(headers[-1], width=status_width, overflow="fold")  # status words wrap at their spaces
        return t

    title = (f"icpd bench compare: {common + ', ' if common else ''}{n_note}tolerance {result.max_slowdown:.0%}, "
             f"alpha {result.alpha}")
    parts: list[RenderableType] = [Text(title, style="italic"), table(None, True)]  # the column names once
    for grp, members in groups.items():
        t = table(grp or None, False)
        for cells, status in members:
            t.add_row(*cells, status)
        parts.append(t)
    parts.append(Text("ms: medians; ratio = candidate / baseline median (CI: 95% bootstrap); p: one-sided "
                      "Mann-Whitney U, candidate slower" + ("; n: samples baseline/candidate" if n_col else "")
                      + ("; (ratio): judged by the median ratio alone, too few samples for the rank test"
                         if any(p.verdict.ratio_only for p in result.pairs) else ""),
                      style="dim"))
    return Group(*parts)


def to_junit_xml(result: CompareResult, path: str | os.PathLike[str]) -> Path:
    """Write JUnit XML: one testcase per pair (failure for a regression), skipped ones for unmatched."""
    failures = len(result.regressions)
    skipped = len(result.only_baseline) + len(result.only_candidate)
    suite = ET.Element(
        "testsuite",
        name="icpd-bench",
        tests=str(len(result.pairs) + skipped),
        failures=str(failures),
        skipped=str(skipped),
        errors="0",
    )
    for pair in result.pairs:
        v = pair.verdict
        case = ET.SubElement(
            suite, "testcase", classname=f"icpd.bench.{pair.key.scenario}", name=pair.key.label, time="0"
        )
        if v.is_regression:
            failure = ET.SubElement(case, "failure", message=v.reason,
                                    type="regression (ratio only)" if v.ratio_only else "regression")
            failure.text = (
                f"baseline median {v.baseline_median:.3f} ms, candidate median {v.candidate_median:.3f} ms, "
                f"ratio {v.ratio:.3f} (CI [{v.ci_low:.3f}, {v.ci_high:.3f}]), p={v.p_value:.3g}, "
                f"n={v.n_baseline}/{v.n_candidate}"
            )
        ET.SubElement(case, "system-out").text = f"{v.status.value}: {v.reason}"
    for side, keys in (("baseline", result.only_baseline), ("candidate", result.only_candidate)):
        for key in keys:
            case = ET.SubElement(suite, "testcase", classname=f"icpd.bench.{key.scenario}", name=key.label)
            ET.SubElement(case, "skipped", message=f"only in the {side} results")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path


# -- what makes two documents comparable ---------------------------------------------------------------
# machine fields of the environment block that must agree (package versions may differ: that is
# often the change under test, and it is shown, not refused)
_MACHINE_FIELDS = ("cpu_model", "cpu_int8_flags", "cpu_cores_usable", "gpus", "jetson_power_mode")


def _scenarios(doc: Mapping[str, Any]) -> set[str]:
    labels = doc.get("scenarios")
    if isinstance(labels, Mapping) and labels:
        return set(labels)
    return {f"{r['scenario']} b{r['batch']} s{r['shots']} c{r['classes']}" for r in doc["results"]}


def _short(values: set[str], limit: int = 3) -> str:
    items = sorted(values)
    return ", ".join(items[:limit]) + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def incomparable(baseline_doc: Mapping[str, Any], candidate_doc: Mapping[str, Any]) -> list[str]:
    """Why the two documents should not be compared (empty: they may be): another preset, other
    scenarios, or another machine (CPU model and INT8 features, usable cores, GPUs, Jetson power
    mode). One line each."""
    problems = []
    presets = [(d.get("model") or {}).get("preset") for d in (baseline_doc, candidate_doc)]
    if None not in presets and presets[0] != presets[1]:
        problems.append(f"presets differ: baseline {presets[0]}, candidate {presets[1]}")
    sb, sc = _scenarios(baseline_doc), _scenarios(candidate_doc)
    if sb != sc:
        parts = [f"only in the baseline: {_short(sb - sc)}" if sb - sc else "",
                 f"only in the candidate: {_short(sc - sb)}" if sc - sb else ""]
        problems.append("scenarios differ (" + "; ".join(p for p in parts if p) + ")")
    envs = [d.get("environment") or {} for d in (baseline_doc, candidate_doc)]
    for name in _MACHINE_FIELDS:
        a, b = envs[0].get(name), envs[1].get(name)
        if a != b and a is not None and b is not None:
            problems.append(f"environments differ: {name} {a!r} vs {b!r}")
    return problems


def verdict_line(result: CompareResult, limit: int = 5) -> str:
    """The last line of a comparison: how many regressions, and which; and, loudly, how many
    results were judged by the median ratio alone (too few samples for the rank test)."""
    regs = result.regressions
    ratio_only = [p for p in result.pairs if p.verdict.ratio_only]
    loud = ""
    if ratio_only:
        n1, n2 = ratio_only[0].verdict.n_baseline, ratio_only[0].verdict.n_candidate
        loud = (f"; RATIO ONLY for {len(ratio_only)} of {len(result.pairs)} result(s): {n1}/{n2} samples cannot reach "
                f"p < {result.alpha}, {min_rounds(result.alpha)} per side can (--allow-ratio-only)")
    if not regs:
        what = ("no regression beyond the tolerance" if len(ratio_only) == len(result.pairs)
                else "no significant regression")
        return what + loud
    names = [f"{p.key.label} (x{p.verdict.ratio:.2f}{', ratio only' if p.verdict.ratio_only else ''})"
             for p in regs[:limit]]
    more = f", +{len(regs) - limit} more" if len(regs) > limit else ""
    kind = "regression(s)" if ratio_only else "significant regression(s)"
    return f"{len(regs)} {kind}: {', '.join(names)}{more}{loud}"
