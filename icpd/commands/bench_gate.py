"""``icpd bench compare`` (the CI gate) and ``icpd bench ab``: a regression is a median ratio above
the tolerance AND a significant one-sided Mann-Whitney U test; a gate that could not fail (too few
rounds for p < alpha) is refused, or judged by the ratio alone when asked to."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from icpd.commands.bench_options import backend_names, claim_outputs, parse_fraction
from icpd.commands.common import BackendOpt, threads_in_range
from icpd.config import Backend

if TYPE_CHECKING:
    from icpd.benchmarks.compare import CompareResult


def _load_pair(baseline: Path, candidate: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    from icpd.benchmarks.compare import split_variants
    from icpd.benchmarks.schema import load

    for path in (baseline, candidate):
        if path is not None and not path.is_file():
            raise ValueError(f"{path}: no such file; pass a JSON file written by "
                             "`icpd bench --json` or `icpd bench ab --json`")
    base = load(baseline)
    return split_variants(base) if candidate is None else (base, load(candidate))


def _verdict(base: dict[str, Any], cand: dict[str, Any], max_slowdown: float, alpha: float,
             junit: Path | None, report: Path | None, force: bool = False, allow_ratio_only: bool = False) -> int:
    """Compare, print the verdict table, write JUnit / report; return the exit code.

    Raises:
        ValueError: the documents are not comparable (another preset, other scenarios, another
            machine) and ``force`` is not set; or a result has too few samples for the rank
            test to reach p < alpha (``TooFewSamples``) and ``allow_ratio_only`` is not set.
    """
    from icpd.benchmarks.compare import (
        compare,
        exit_code,
        incomparable,
        render_table,
        to_junit_xml,
        verdict_line,
    )
    from icpd.commands.common import note, out

    problems = incomparable(base, cand)
    if problems and not force:
        raise ValueError("these results are not comparable: " + "; ".join(problems) +
                         ". Compare runs of the same preset and scenarios on the same machine, or pass --force")
    for line in problems:
        note(f"compared anyway (--force): {line}")
    result = compare(base, cand, max_slowdown, alpha, allow_ratio_only=allow_ratio_only)
    if not result.pairs:
        raise ValueError("the two documents have no result in common (same scenario, backend, precision, stage, "
                         "batch, shots, classes); nothing to compare")
    out.print(render_table(result))
    if junit is not None:
        out.print(f"wrote {to_junit_xml(result, junit)}", highlight=False)
    if report is not None:
        out.print(f"wrote {_compare_report(base, cand, result, report)}", highlight=False)
    code = exit_code(result)
    loud = "bold yellow" if any(p.verdict.ratio_only for p in result.pairs) else "green"
    out.print(verdict_line(result), style="bold red" if result.regressions else loud, markup=False, highlight=False,
              soft_wrap=True)
    return code


def _compare_report(base: dict[str, Any], cand: dict[str, Any], result: CompareResult, out_dir: Path) -> Path:
    from icpd.benchmarks.report import write_markdown_report

    merged = {**cand, "random_weights": bool(base.get("random_weights") or cand.get("random_weights")),
              "results": [{**r, "variant": r.get("variant", side)}
                          for side, d in (("baseline", base), ("candidate", cand))
                          for r in d["results"]]}
    report = write_markdown_report(merged, out_dir)
    lines = ["", "## Verdict", "",
             (f"Regression = median ratio > {1 + result.max_slowdown:.2f} and "
              f"one-sided Mann-Whitney U p < {result.alpha}."),
             "", "| benchmark | baseline ms | candidate ms | ratio | p | status |", "|---|---|---|---|---|---|"]
    lines += [f"| {p.key.label} | {p.verdict.baseline_median:.3f} | {p.verdict.candidate_median:.3f} | "
              f"{p.verdict.ratio:.3f} | {p.verdict.p_value:.2g} | {p.verdict.status.value}"
              f"{' (ratio only: too few samples for the rank test)' if p.verdict.ratio_only else ''} |"
              for p in result.pairs]
    with report.open("a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return report


MaxSlowdown = Annotated[str, typer.Option(help="Tolerated slowdown of the median: 10% or 0.10.")]
Alpha = Annotated[float, typer.Option(min=1e-9, max=0.5, help="Significance level of the "
                                                              "one-sided Mann-Whitney U test.")]
Junit = Annotated[Path | None, typer.Option(help="Write JUnit XML (one test case per result) here.")]
Report = Annotated[Path | None, typer.Option(help="Write report.md, plots and the verdict into this folder.")]
RatioOnly = Annotated[bool, typer.Option(
    "--allow-ratio-only", help="With too few samples (rounds) for the rank test to reach p < alpha (alpha 0.01 needs 5 "
                               "per side, 0.05 needs 4), judge by the median ratio alone, said in the table and the "
                               "verdict line, instead of refusing (exit 2).")]


def compare_cmd(
    baseline: Annotated[Path, typer.Argument(help="Baseline results (JSON), or one A/B "
                                                  "file from `icpd bench ab --json`.")],
    candidate: Annotated[Path | None, typer.Argument(help="Candidate results (JSON); omit for an A/B file.")] = None,
    max_slowdown: MaxSlowdown = "10%",
    alpha: Alpha = 0.01,
    junit: Junit = None,
    report: Report = None,
    force: Annotated[bool, typer.Option(help="Compare even when presets, scenarios or "
                                             "machines differ (a note says which).")] = False,
    allow_ratio_only: RatioOnly = False,
) -> None:
    """Exit 1 only on a significant regression (ratio above tolerance AND p < alpha), else 0.

    Refuses (exit 2) results of another preset, other scenarios or another machine unless --force,
    and results with too few samples for p < alpha (the gate could not fail) unless --allow-ratio-only."""
    from icpd.commands.common import fail

    try:
        base, cand = _load_pair(baseline, candidate)
        code = _verdict(base, cand, parse_fraction(max_slowdown), alpha, junit, report, force, allow_ratio_only)
    except (ValueError, OSError, typer.BadParameter) as e:
        fail(e)
    raise typer.Exit(code)


def ab_cmd(
    a_model: Annotated[Path, typer.Argument(help="Baseline model dir (`icpd export`).")],
    b_model: Annotated[Path, typer.Argument(help="Candidate model dir.")],
    backend: BackendOpt = Backend.ORT,
    device: Annotated[str, typer.Option(help="auto (cpu; cuda for trt), cpu or cuda.")] = "auto",
    rounds: Annotated[int | None, typer.Option(min=2, help="Measured rounds, each runs A and B once in "
                                                           "random order (default 30; --quick 15).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Fewer rounds (15).")] = False,
    shots: Annotated[int, typer.Option(min=1, help="Shots of the cached support.")] = 1,
    batch: Annotated[int, typer.Option(min=1, help="Query tiles per call.")] = 1,
    threads: Annotated[int | None, typer.Option(min=1, callback=threads_in_range,
                                                help="CPU threads per backend.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json",
                                                   help="Write the A/B results here (for "
                                                        "`icpd bench compare`).")] = None,
    max_slowdown: MaxSlowdown = "10%",
    alpha: Alpha = 0.01,
    junit: Junit = None,
    report: Report = None,
    allow_ratio_only: RatioOnly = False,
) -> None:
    """Time two model dirs interleaved (A, B, A, B ...) in one process on the cached-support query; exit like compare.

    Refuses (exit 2, before timing anything) --rounds too few for p < --alpha unless --allow-ratio-only."""
    from icpd.artifacts.model_dir import ModelDirError
    from icpd.benchmarks.compare import split_variants
    from icpd.benchmarks.latency import ABConfig, run_model_ab
    from icpd.benchmarks.schema import dump
    from icpd.benchmarks.stats import can_reach, min_rounds, smallest_p_value
    from icpd.commands.common import fail, out

    try:
        tolerance = parse_fraction(max_slowdown)
        n = rounds or (15 if quick else 30)
        if not can_reach(alpha, n, n) and not allow_ratio_only:
            raise ValueError(f"--rounds {n}: with --alpha {alpha} the rank test cannot flag a regression (the smallest "
                             f"p of {n} vs {n} samples is {smallest_p_value(n, n):.3g}); use --rounds "
                             f"{min_rounds(alpha)} or more, or --allow-ratio-only to judge by the median ratio alone")
        (name,) = backend_names(backend.value, device)
        config = ABConfig(backend=name, rounds=n, shots=shots, batch=batch, threads=threads)
        with claim_outputs(json_path, report, junit):  # written after the timing: claimed before it
            doc = run_model_ab(a_model, b_model, config)
            if json_path is not None:
                out.print(f"wrote {dump(doc, json_path)}", highlight=False)
            code = _verdict(*split_variants(doc), tolerance, alpha, junit, report, allow_ratio_only=allow_ratio_only)
    except (ValueError, ModelDirError, ImportError, OSError, typer.BadParameter) as e:
        fail(e)
    raise typer.Exit(code)


def register(group: typer.Typer) -> None:
    """Add ``compare`` and ``ab`` to the ``icpd bench`` group."""
    group.command("compare")(compare_cmd)
    group.command("ab")(ab_cmd)
