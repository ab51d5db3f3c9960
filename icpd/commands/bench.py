"""``icpd bench``: latency scenarios, ``icpd bench compare`` (the CI gate) and ``icpd bench ab``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from icpd.commands.common import BackendOpt, QuietOpt
from icpd.config import Backend

if TYPE_CHECKING:
    from icpd.benchmarks.compare import CompareResult

bench_app = typer.Typer(
    name="bench",
    help="Latency benchmarks: scenarios per backend, A/B runs, and a regression gate on ratios.",
    invoke_without_command=True,
    no_args_is_help=False,
)


def _ints(text: str, option: str, minimum: int = 1) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give comma-separated integers, e.g. 1,5", param_hint=option) from None
    if not values or min(values) < minimum:
        raise typer.BadParameter(f"{text!r}: give integers >= {minimum}, e.g. 1,5", param_hint=option)
    return values


def parse_fraction(text: str) -> float:
    """``"10%"`` or ``"0.10"`` -> 0.10 (a bare number >= 1 is refused as ambiguous)."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: write a percentage (10%) or a fraction (0.10)") from None
    if value < 0 or (value >= 1 and not raw.endswith("%")):
        raise typer.BadParameter(f"{text!r}: write a percentage (10%) or a fraction below 1 (0.10)")
    return value


_LEGACY_NAMES = ("ort-cpu", "torch-cpu", "ort-cuda", "torch-cuda", "onnxruntime", "tensorrt")  # icpd <= 0.x spellings
_DEVICES = ("auto", "cpu", "cuda")


def backend_names(backends: str, device: str = "auto") -> str | tuple[str, ...]:
    """``--backends`` (auto, or torch/ort/trt, comma-separated) and ``--device`` (auto, cpu,
    cuda) -> what :class:`icpd.benchmarks.latency.BenchConfig` takes: ``"auto"`` or result names
    such as ``ort-cpu``, ``torch-cuda``, ``trt``. The old spellings (``ort-cpu`` ...) are accepted.

    Raises:
        typer.BadParameter: an unknown backend or device, or trt on the CPU.
    """
    from icpd.config import Backend

    if device not in _DEVICES:
        raise typer.BadParameter(f"--device {device!r}: choose auto, cpu or cuda")
    choices = ", ".join(b.value for b in Backend)
    if backends.strip() == "auto":
        if device == "auto":
            return "auto"
        from icpd.benchmarks.latency import available_backends

        return tuple(n for n in available_backends() if (n == "trt" and device == "cuda") or n.endswith(f"-{device}"))
    names: list[str] = []
    for item in (b.strip().lower() for b in backends.split(",")):
        if not item:
            continue
        if item in _LEGACY_NAMES:
            names.append(item)
            continue
        if item not in {b.value for b in Backend}:
            raise typer.BadParameter(f"unknown backend {item!r}; choose auto or a list of {choices} "
                                     "(with --device cpu|cuda)", param_hint="--backends")
        if item == Backend.TRT.value:
            if device == "cpu":
                raise typer.BadParameter("trt runs on cuda: drop it or pass --device cuda", param_hint="--backends")
            names.append("trt")
        else:
            names.append(f"{item}-{'cpu' if device == 'auto' else device}")
    if not names:
        raise typer.BadParameter(f"no backend given; use auto or e.g. {choices}", param_hint="--backends")
    return tuple(dict.fromkeys(names))


def _print_doc(doc: dict[str, Any], tables: bool = True) -> None:
    """The compact result table, device times and ratios (``tables``), then any high-variance warning."""
    from rich.table import Table

    from icpd.benchmarks.report import CV_THRESHOLD, render_summary_table
    from icpd.benchmarks.timer import END_TO_END
    from icpd.commands.common import console, out

    if tables:
        out.print(render_summary_table(doc))
    gpu = [r for r in doc["results"] if r.get("gpu_samples")] if tables else []
    if gpu:
        import numpy as np

        t = Table(title="device time (CUDA events) next to host latency, medians in ms")
        for col in ("scenario", "backend", "host ms", "device ms"):
            t.add_column(col)
        for r in gpu:
            t.add_row(r["scenario"], r["backend"], f"{r['summary']['median']:.3f}", f"{np.median(r['gpu_samples']):.3f}")
        out.print(t)
    if doc.get("ratios") and tables:
        t = Table(title="ratios (how each is computed: JSON \"ratios\" / report.md)")
        for col in ("ratio", "backend", "value"):
            t.add_column(col, justify="right" if col == "value" else "left")
        for r in doc["ratios"]:
            t.add_row(r["name"], r["backend"], f"{r['value']:.2f}x")
        out.print(t)
    noisy = [(f"{r['backend']}/{r['scenario']} b{r['batch']} s{r['shots']} c{r['classes']}", r["summary"]["cv"])
             for r in doc["results"] if r["stage"] == END_TO_END and r["summary"]["cv"] > CV_THRESHOLD]
    if noisy:
        listed = ", ".join(f"{label} ({cv:.0%})" for label, cv in noisy)
        console.print(f"warning: high variance (end-to-end CV above {CV_THRESHOLD:.0%}): {listed}. The machine may be "
                      "busy or throttling; close other programs or measure longer (--rounds, --duration) before "
                      "trusting these numbers.", style="yellow", markup=False, highlight=False, soft_wrap=True)


def _append_ratios(report: Path, doc: dict[str, Any]) -> None:
    lines = ["", "## Ratios", "", "| ratio | backend | value | how |", "|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['backend']} | {r['value']:.2f}x | {r['detail']} |" for r in doc.get("ratios", [])]
    lines += ["", "## Scenarios", ""] + [f"- `{k}`: {v}" for k, v in doc.get("scenarios", {}).items()]
    with report.open("a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def _claim_outputs(json_path: Path | None, report_dir: Path | None, junit: Path | None = None) -> Any:
    """Hold --json, --report (and --junit) for the run (:func:`icpd.io.outputs.claim_output`): an unwritable one fails
    before the work, and another run writing the same one is refused at once, with its pid."""
    import contextlib

    from icpd.io.outputs import claim_output

    claims = contextlib.ExitStack()
    with claims:
        for path, folder in ((json_path, False), (report_dir, True), (junit, False)):
            if path is not None:
                claims.enter_context(claim_output(path, "bench", folder=folder))
        return claims.pop_all()


def _write_outputs(doc: dict[str, Any], json_path: Path | None, report_dir: Path | None) -> list[Path]:
    from icpd.benchmarks.report import write_markdown_report
    from icpd.benchmarks.schema import dump

    written = []
    if json_path is not None:
        written.append(dump(doc, json_path))
    if report_dir is not None:
        report = write_markdown_report(doc, report_dir)
        if doc.get("ratios") or doc.get("scenarios"):
            _append_ratios(report, doc)
        written.append(report)
    return written


class _Steps:
    """Progress of run_benchmark: a rich bar on a terminal, one line per step otherwise."""

    def __init__(self, enabled: bool) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        from icpd.commands.common import console

        self.console = console
        self.live = enabled and console.is_terminal
        self.lines = enabled and not self.live
        self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=console, disable=not self.live)
        self.task = self.bar.add_task("icpd bench", total=None)

    def __call__(self, text: str, done: int, total: int) -> None:
        self.bar.update(self.task, description=text, completed=done, total=total)
        if self.lines:
            self.console.print(f"[{done}/{total}] {text}", markup=False, highlight=False, soft_wrap=True)


@bench_app.callback()
def bench_cmd(
    ctx: typer.Context,
    checkpoint: Annotated[Path | None, typer.Option(help="Trained weights (.pt or .safetensors); default: seeded random weights (latency only).")] = None,
    model_dir: Annotated[Path | None, typer.Option("--model", "-m", "--model-dir", help="Exported model directory (`icpd export`) to time as is.")] = None,
    preset: Annotated[str | None, typer.Option(help="Preset to build (default: paper; tiny with --quick).")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Where exported models are kept and reused (default: ~/.cache/icpd/bench).")] = None,
    backends: Annotated[str, typer.Option(help="auto (every backend available here) or a comma-separated list of torch, ort, trt.")] = "auto",
    device: Annotated[str, typer.Option(help="auto (cpu, and cuda where available; cpu for a --backends list), cpu or cuda; trt runs on cuda.")] = "auto",
    shots: Annotated[str, typer.Option(help="Shots of the uncached and cached scenarios, comma-separated.")] = "1,5",
    batch: Annotated[str, typer.Option(help="Tile batch sizes of the batch scenario (B > 1), comma-separated.")] = "2",
    classes: Annotated[int, typer.Option(min=1, help="N of the N-classes-per-query scenario (1: skip it).")] = 5,
    rounds: Annotated[int, typer.Option(min=0, help="Interleave each backend's scenarios: this many rounds, each running every scenario once in a random order, so drifts of a busy machine hit all of them alike; 0: one scenario after the other, each for --duration / --iterations.")] = 5,
    duration: Annotated[float | None, typer.Option(min=0.0, help="With --rounds 0: seconds to measure each scenario at least (default 4; --quick 0.3).")] = None,
    iterations: Annotated[int | None, typer.Option(min=1, help="With --rounds 0: iterations to measure each scenario at least (default 3; --quick 5).")] = None,
    warmup: Annotated[float | None, typer.Option(min=0.0, help="Warm-up seconds per scenario, at least one call (default 1; --quick 0.2).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Tiny preset, short budgets: a smoke run in seconds.")] = False,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads per backend (default: the backend's own choice).")] = None,
    precision: Annotated[str | None, typer.Option(help="Precisions to time side by side, interleaved in the same rounds: "
                                                       "fp32, int8 or fp32,int8 (int8: ONNX Runtime on the CPU, quantized "
                                                       "from the FP32 model once). Default: the model's own.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the results (schema_version 1) here.")] = None,
    report: Annotated[Path | None, typer.Option(help="Write report.md and PNG plots into this folder.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Time ICPD-Net scenarios (uncached episode, cached 1/5-shot, N classes, tile batches) per backend.

    With no checkpoint or model dir, the paper network with seeded random weights is exported
    once (reused from --cache-dir afterwards): the numbers are latency only.
    """
    if ctx.invoked_subcommand is not None:
        return
    from icpd.benchmarks.budget import plan_run
    from icpd.benchmarks.precision import parse_precisions
    from icpd.commands.common import console, fail, out, preset_callback
    from icpd.commands.torch_check import check_torchvision

    try:
        preset_callback(preset)
        precisions = parse_precisions(precision)
        for text, option in ((shots, "--shots"), (batch, "--batch")):
            _ints(text, option)
        # a list is refused now if wrong, not after the plan ("auto" may import torch)
        listed = () if backends.strip() == "auto" else backend_names(backends, device)
    except (ValueError, typer.BadParameter) as e:
        fail(e)
    plan = plan_run(preset, quick, model_dir, checkpoint, cache_dir, precisions)  # before any work: what it will cost
    if not quiet:
        for line in plan.lines():
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    if (refusal := plan.refusal()) is not None:
        fail(refusal)
    # before the export or the torch backend imports it, deep in a traceback (an ONNX Runtime run of a
    # model dir imports no torch: its memory figures stay lean)
    uses_torch = model_dir is None or not listed or any(n.startswith(("torch", "trt")) for n in listed)
    if uses_torch and (mismatch := check_torchvision()) is not None:
        fail(mismatch)
    from icpd.benchmarks.latency import BenchConfig, run_benchmark
    from icpd.export.model_dir import ModelDir, ModelDirError
    from icpd.export.quantize import Int8ConversionError

    try:
        if "int8" in precisions and backends.strip() == "auto":
            backends, device = "ort", "cpu"  # INT8 dirs run on ONNX Runtime (CPU) only
        names = backend_names(backends, device)
        if model_dir is not None and backends.strip() == "auto" and ModelDir.open(model_dir).runtime_only:
            from icpd.benchmarks.latency import available_backends

            # no PyTorch weights: ONNX Runtime and TensorRT only
            names = tuple(n for n in (available_backends() if names == "auto" else names) if not n.startswith("torch"))
        config = BenchConfig(preset=preset, checkpoint=checkpoint, model_dir=model_dir, cache_dir=cache_dir,
                             backends=names, shots=_ints(shots, "--shots"), batch=_ints(batch, "--batch"),
                             classes=classes, duration_s=duration, iterations=iterations, warmup_s=warmup,
                             quick=quick, threads=threads, rounds=rounds, precisions=precisions)
        with _claim_outputs(json_path, report):  # written at the end: claimed before the work
            steps = _Steps(enabled=not quiet)
            with steps.bar:
                doc = run_benchmark(config, on_step=steps)
            _print_doc(doc, tables=not quiet)
            written = _write_outputs(doc, json_path, report)
    except (ValueError, ModelDirError, Int8ConversionError, ImportError, OSError, typer.BadParameter) as e:
        fail(e)
    exported = doc["model"]["exported_s"]
    export_note = f" (export {exported:.0f} s)" if exported else ""
    out.print(f"wall time {doc['wall_s']:.1f} s{export_note}; weights: {doc['weights']['origin']}", highlight=False)
    for path in written:
        out.print(f"wrote {path}", highlight=False)


def _load_pair(baseline: Path, candidate: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    from icpd.benchmarks.compare import split_variants
    from icpd.benchmarks.schema import load

    for path in (baseline, candidate):
        if path is not None and not path.is_file():
            raise ValueError(f"{path}: no such file; pass a JSON file written by `icpd bench --json` or `icpd bench ab --json`")
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
              "results": [{**r, "variant": r.get("variant", side)} for side, d in (("baseline", base), ("candidate", cand))
                          for r in d["results"]]}
    report = write_markdown_report(merged, out_dir)
    lines = ["", "## Verdict", "",
             f"Regression = median ratio > {1 + result.max_slowdown:.2f} and one-sided Mann-Whitney U p < {result.alpha}.", "",
             "| benchmark | baseline ms | candidate ms | ratio | p | status |", "|---|---|---|---|---|---|"]
    lines += [f"| {p.key.label} | {p.verdict.baseline_median:.3f} | {p.verdict.candidate_median:.3f} | "
              f"{p.verdict.ratio:.3f} | {p.verdict.p_value:.2g} | {p.verdict.status.value}"
              f"{' (ratio only: too few samples for the rank test)' if p.verdict.ratio_only else ''} |" for p in result.pairs]
    with report.open("a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return report


MaxSlowdown = Annotated[str, typer.Option(help="Tolerated slowdown of the median: 10% or 0.10.")]
Alpha = Annotated[float, typer.Option(min=1e-9, max=0.5, help="Significance level of the one-sided Mann-Whitney U test.")]
Junit = Annotated[Path | None, typer.Option(help="Write JUnit XML (one test case per result) here.")]
Report = Annotated[Path | None, typer.Option(help="Write report.md, plots and the verdict into this folder.")]
RatioOnly = Annotated[bool, typer.Option(
    "--allow-ratio-only", help="With too few samples (rounds) for the rank test to reach p < alpha (alpha 0.01 needs 5 "
                               "per side, 0.05 needs 4), judge by the median ratio alone, said in the table and the "
                               "verdict line, instead of refusing (exit 2).")]


@bench_app.command("compare")
def compare_cmd(
    baseline: Annotated[Path, typer.Argument(help="Baseline results (JSON), or one A/B file from `icpd bench ab --json`.")],
    candidate: Annotated[Path | None, typer.Argument(help="Candidate results (JSON); omit for an A/B file.")] = None,
    max_slowdown: MaxSlowdown = "10%",
    alpha: Alpha = 0.01,
    junit: Junit = None,
    report: Report = None,
    force: Annotated[bool, typer.Option(help="Compare even when presets, scenarios or machines differ (a note says which).")] = False,
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


@bench_app.command("ab")
def ab_cmd(
    a_model: Annotated[Path, typer.Argument(help="Baseline model dir (`icpd export`).")],
    b_model: Annotated[Path, typer.Argument(help="Candidate model dir.")],
    backend: BackendOpt = Backend.ORT,
    device: Annotated[str, typer.Option(help="auto (cpu; cuda for trt), cpu or cuda.")] = "auto",
    rounds: Annotated[int | None, typer.Option(min=2, help="Measured rounds, each runs A and B once in random order (default 30; --quick 15).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Fewer rounds (15).")] = False,
    shots: Annotated[int, typer.Option(min=1, help="Shots of the cached support.")] = 1,
    batch: Annotated[int, typer.Option(min=1, help="Query tiles per call.")] = 1,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads per backend.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the A/B results here (for `icpd bench compare`).")] = None,
    max_slowdown: MaxSlowdown = "10%",
    alpha: Alpha = 0.01,
    junit: Junit = None,
    report: Report = None,
    allow_ratio_only: RatioOnly = False,
) -> None:
    """Time two model dirs interleaved (A, B, A, B ...) in one process on the cached-support query; exit like compare.

    Refuses (exit 2, before timing anything) --rounds too few for p < --alpha unless --allow-ratio-only."""
    from icpd.benchmarks.compare import split_variants
    from icpd.benchmarks.latency import ABConfig, run_model_ab
    from icpd.benchmarks.schema import dump
    from icpd.benchmarks.stats import can_reach, min_rounds, smallest_p_value
    from icpd.commands.common import fail, out
    from icpd.export.model_dir import ModelDirError

    try:
        tolerance = parse_fraction(max_slowdown)
        n = rounds or (15 if quick else 30)
        if not can_reach(alpha, n, n) and not allow_ratio_only:
            raise ValueError(f"--rounds {n}: with --alpha {alpha} the rank test cannot flag a regression (the smallest "
                             f"p of {n} vs {n} samples is {smallest_p_value(n, n):.3g}); use --rounds "
                             f"{min_rounds(alpha)} or more, or --allow-ratio-only to judge by the median ratio alone")
        (name,) = backend_names(backend.value, device)
        config = ABConfig(backend=name, rounds=n, shots=shots, batch=batch, threads=threads)
        with _claim_outputs(json_path, report, junit):  # written after the timing: claimed before it
            doc = run_model_ab(a_model, b_model, config)
            if json_path is not None:
                out.print(f"wrote {dump(doc, json_path)}", highlight=False)
            code = _verdict(*split_variants(doc), tolerance, alpha, junit, report, allow_ratio_only=allow_ratio_only)
    except (ValueError, ModelDirError, ImportError, OSError, typer.BadParameter) as e:
        fail(e)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
