"""`icpd build` (TensorRT engines), `icpd validate` (backends vs PyTorch FP32) and `icpd check-trt`
(the static TensorRT compatibility check of a model dir's graphs).

User errors are the project's own error types (and ValueError from option parsing): one line,
exit 2. Anything else (an internal torch, ONNX Runtime or TensorRT failure) keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from icpd.commands.common import ModelDirOpt, QuietOpt, RankPriorOpt, finite_number

TrtVersionOpt = Annotated[str, typer.Option("--trt-version", help="TensorRT version to check against: 10.3 "
                                                                  "(JetPack 6) or 11 (desktop/datacenter).")]


def user_errors() -> tuple[type[Exception], ...]:
    """The exception types a command reports as a one-line user error (imported lazily: keeps the CLI light)."""
    from icpd.artifacts.engine_sidecar import EngineMismatchError
    from icpd.artifacts.model_dir import ModelDirError
    from icpd.export.fp16 import Fp16ConversionError
    from icpd.kernels.ort_custom_op import OrtExtensionsUnavailableError
    from icpd.trt import TensorRTUnavailableError
    from icpd.trt.build import EngineBuildError

    return (ValueError, ModelDirError, EngineBuildError, TensorRTUnavailableError, EngineMismatchError,
            Fp16ConversionError, OrtExtensionsUnavailableError)


def _progress_line(line: str) -> None:
    """One line of `icpd build` progress on stderr (called from TensorRT's builder threads too)."""
    from icpd.commands.common import console

    console.print(f"build: {line}", markup=False, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    from icpd.commands.common import console, fail, out

    @app.command("build")
    def build_cmd(
        model: ModelDirOpt,
        out_dir: Annotated[Path, typer.Option("--out", "-o", help="Engine directory to write.")],
        precision: Annotated[str, typer.Option(help="fp16 or fp32.")] = "fp16",
        rank_prior: RankPriorOpt = None,
        batch: Annotated[str, typer.Option(help="Query batch profile MIN,OPT,MAX.")] = "1,1,4",
        shots: Annotated[str, typer.Option(help="Support shots profile MIN,OPT,MAX.")] = "1,1,5",
        workspace: Annotated[float, typer.Option(min=0.001, callback=finite_number,
                                                 help="Builder workspace limit in GiB.")] = 4.0,
        plugin_library: Annotated[Path | None, typer.Option(help="C++ NdcgPrior plugin (.so) instead of the AOT "
                                                                 "plugin.")] = None,
        force: Annotated[bool, typer.Option(help="Replace an existing, non-empty --out.")] = False,
        opt_level: Annotated[int | None, typer.Option(
            "--opt-level", help="Builder optimisation level 0-5 (TensorRT's default 3; lower builds faster).")] = None,
        timing_cache: Annotated[Path | None, typer.Option(
            help="Timing cache file, read if present and saved after the build \\[default: OUT/timing.cache].")] = None,
        quiet: QuietOpt = False,
    ) -> None:
        """Build TensorRT engines (encoder + matcher) for a model dir; writes engines.json beside them.

        The model dir's graphs are checked first (`icpd check-trt`): a graph TensorRT cannot build
        stops the build with the table of violations (exit 2) instead of a parser error. Build
        phases are reported on stderr (unless -q); the timing cache makes a rebuild on the same GPU
        and TensorRT faster."""
        from icpd.io import OutputPathError
        from icpd.io.outputs import check_output, claim_output
        from icpd.trt.build import build_engines, parse_profile
        from icpd.trt.check import TrtCompatibilityError

        try:  # --out claimed first: writable, and no other build writing it (refused at once, with its pid)
            if timing_cache is not None:  # saved after the build: checked before it
                check_output(timing_cache)
            with claim_output(out_dir, "build", folder=True, renamed=True):
                res = build_engines(model, out_dir, precision=precision, batch=parse_profile(batch, "batch"),
                                    shots=parse_profile(shots, "shots"),
                                    rank_prior=rank_prior.value if rank_prior else None,
                                    workspace=int(workspace * (1 << 30)), plugin_library=plugin_library, force=force,
                                    opt_level=opt_level, timing_cache=timing_cache,
                                    progress=None if quiet else _progress_line)
        except OutputPathError as e:
            fail(e)
        except TrtCompatibilityError as e:
            console.print(e.report.format_table(), markup=False, highlight=False, soft_wrap=True)
            fail(f"{model}: TensorRT {e.report.trt_version} cannot build these graphs (the violations above); "
                 "nothing was built")
        except user_errors() as e:
            fail(e)
        s = res.sidecar
        if not quiet:
            out.print(f"wrote {res.path}: {', '.join(s.engines)} engines, {s.precision}, "
                      f"TensorRT {s.env.tensorrt_version} on {s.env.gpu_name}, batch {s.batch}, shots {s.shots} "
                      f"in {res.seconds:.1f} s")

    @app.command("validate")
    def validate_cmd(
        model: Annotated[Path, typer.Option("--model", "-m",
                                            help="Model directory from `icpd export` (FP32 or FP16).")],
        engines: Annotated[Path | None, typer.Option(help="Engine directory from `icpd build` (for trt).")] = None,
        backends: Annotated[str, typer.Option(help="Comma-separated: torch, ort, trt.")] = "torch,ort",
        runs: Annotated[int, typer.Option(min=1, help="Seeded episodes.")] = 3,
        seed: Annotated[int, typer.Option(help="Seed of the episodes.")] = 0,
        batch: Annotated[int, typer.Option(min=1, help="Query images per episode.")] = 2,
        device: Annotated[str, typer.Option(help="Device of the torch and trt backends: cpu or cuda[:N].")] = "cpu",
        json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here.")] = None,
        quiet: QuietOpt = False,
    ) -> None:
        """Per-output error statistics and mask IoU of each backend against PyTorch FP32; exit 1 on FAIL.

        With -q the report prints only when a backend fails."""
        from icpd.apps.validate import format_report, validate_model, write_report
        from icpd.runtime.backends.registry import info

        names = tuple(b.strip() for b in backends.split(",") if b.strip())
        if any(n in ("trt", *info("trt").aliases) for n in names) and device == "cpu":  # trt runs on CUDA
            device = "cuda"
        try:
            report = validate_model(model, names, engine_dir=engines, runs=runs, seed=seed, batch=batch, device=device)
        except user_errors() as e:
            fail(e)
        if not quiet or not report.passed:
            out.print(format_report(report), markup=False, highlight=False, soft_wrap=True)
        if json_out is not None:
            write_report(report, json_out)
            if not quiet:
                out.print(f"wrote {json_out}")
        if not report.passed:
            raise typer.Exit(code=1)

    @app.command("check-trt")
    def check_trt_cmd(
        model_dir: Annotated[Path, typer.Argument(help="Model directory from `icpd export` (FP32 or FP16).")],
        trt_version: TrtVersionOpt = "10.3",
        quiet: QuietOpt = False,
    ) -> None:
        """Static check of a model dir's graphs against TensorRT's ONNX parser, without TensorRT.

        Op support and per-op restrictions (TensorRT's ONNX operator matrix), data types, the opset
        range, shape tensors traced to Shape outputs and initializers (Scan/Loop/If bodies included),
        custom nodes. Prints a table of violations (node, op, rule, fix); exit 1 on any, 0 when the
        graphs are buildable as far as a static check can tell."""
        from icpd.trt.check import check_model_dir

        try:
            report = check_model_dir(model_dir, trt_version)
        except user_errors() as e:
            fail(e)
        if not quiet or not report.passed:
            out.print(report.format_table(), markup=False, highlight=False, soft_wrap=True)
        if not quiet:
            for line in report.notes:
                out.print(f"note: {line}", markup=False, highlight=False, soft_wrap=True)
        if not report.passed:
            raise typer.Exit(code=1)
