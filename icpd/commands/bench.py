"""``icpd bench``: latency scenarios per backend (``compare`` and ``ab``: :mod:`icpd.commands.bench_gate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from icpd.commands import bench_gate
from icpd.commands.bench_options import backend_names, claim_outputs, parse_ints
from icpd.commands.common import QuietOpt, finite_number, threads_in_range

bench_app = typer.Typer(
    name="bench",
    help="Latency benchmarks: scenarios per backend, A/B runs, and a regression gate on ratios.",
    invoke_without_command=True,
    no_args_is_help=False,
)


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
            t.add_row(r["scenario"], r["backend"], f"{r['summary']['median']:.3f}",
                      f"{np.median(r['gpu_samples']):.3f}")
        out.print(t)
    if doc.get("ratios") and tables:
        t = Table(title="ratios (how each is computed: JSON \"ratios\" / report.md)")
        for col in ("ratio", "backend", "value"):
            t.add_column(col, justify="right" if col == "value" else "left")
        for r in doc["ratios"]:
            t.add_row(r["name"], r["backend"], f"{r['value']:.2f}x")
        out.print(t)
    if tables and "int8" in (doc.get("models") or {}):  # what the INT8 figures are of (mixed precision)
        from icpd.benchmarks.precision import int8_kept_text

        out.print(f"INT8 model dir {doc['models']['int8']['path']}: {int8_kept_text(doc)}", markup=False,
                  highlight=False, soft_wrap=True)
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
    checkpoint: Annotated[Path | None, typer.Option(help="Trained weights (.pt or .safetensors); default: "
                                                         "seeded random weights (latency only).")] = None,
    model_dir: Annotated[Path | None, typer.Option("--model", "-m", "--model-dir",
                                                   help="Exported model directory (`icpd "
                                                        "export`) to time as is.")] = None,
    preset: Annotated[str | None, typer.Option(help="Preset to build (default: paper; tiny with --quick).")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Where exported models are kept and reused "
                                                        "(default: ~/.cache/icpd/bench).")] = None,
    backends: Annotated[str, typer.Option(help="auto (every backend available here) or a "
                                               "comma-separated list of torch, ort, trt.")] = "auto",
    device: Annotated[str, typer.Option(help="auto (cpu, and cuda where available; cpu for a --backends "
                                             "list), cpu or cuda; trt runs on cuda.")] = "auto",
    shots: Annotated[str, typer.Option(help="Shots of the uncached and cached scenarios, comma-separated.")] = "1,5",
    batch: Annotated[str, typer.Option(help="Tile batch sizes of the batch scenario (B > 1), comma-separated.")] = "2",
    classes: Annotated[int, typer.Option(min=1, help="N of the N-classes-per-query scenario (1: skip it).")] = 5,
    rounds: Annotated[int, typer.Option(min=0, help="Interleave each backend's scenarios: this many rounds, each "
                                                    "running every scenario once in a random order, so drifts of "
                                                    "a busy machine hit all of them alike; 0: one scenario after "
                                                    "the other, each for --duration / --iterations.")] = 5,
    duration: Annotated[float | None, typer.Option(min=0.0, callback=finite_number,
                                                   help="With --rounds 0: seconds to measure each scenario "
                                                        "at least (default 4; --quick 0.3).")] = None,
    iterations: Annotated[int | None, typer.Option(min=1, help="With --rounds 0: iterations to measure each "
                                                               "scenario at least (default 3; --quick 5).")] = None,
    warmup: Annotated[float | None, typer.Option(min=0.0, callback=finite_number,
                                                 help="Warm-up seconds per scenario, at least one "
                                                      "call (default 1; --quick 0.2).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Tiny preset, short budgets: a smoke run in seconds.")] = False,
    threads: Annotated[int | None, typer.Option(min=1, callback=threads_in_range,
                                                help="CPU threads per backend (default: "
                                                     "the backend's own choice).")] = None,
    precision: Annotated[str | None, typer.Option(help="Precisions to time side by side, interleaved in the same "
                                                       "rounds: fp32, int8 or fp32,int8 (int8: ONNX Runtime on the "
                                                       "CPU, quantized from the FP32 model once). Default: the "
                                                       "model's own.")] = None,
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
            parse_ints(text, option)
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
    from icpd.artifacts.model_dir import ModelDir, ModelDirError
    from icpd.benchmarks.latency import BenchConfig, run_benchmark
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
                             backends=names, shots=parse_ints(shots, "--shots"), batch=parse_ints(batch, "--batch"),
                             classes=classes, duration_s=duration, iterations=iterations, warmup_s=warmup,
                             quick=quick, threads=threads, rounds=rounds, precisions=precisions)
        with claim_outputs(json_path, report):  # written at the end: claimed before the work
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


def register(app: typer.Typer) -> None:
    bench_gate.register(bench_app)
    app.add_typer(bench_app, name="bench")
