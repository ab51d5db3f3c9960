"""`icpd build` (TensorRT engines) and `icpd validate` (backends vs PyTorch FP32)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    from icpd.commands.common import fail, out

    @app.command("build")
    def build_cmd(
        model: Annotated[Path, typer.Option(help="Model directory from `icpd export`.")],
        out_dir: Annotated[Path, typer.Option("--out", "-o", help="Engine directory to write.")],
        precision: Annotated[str, typer.Option(help="fp16 or fp32.")] = "fp16",
        rank_prior: Annotated[str | None, typer.Option(help="plugin or onnx; must match the export (default: the model's).")] = None,
        batch: Annotated[str, typer.Option(help="Query batch profile MIN,OPT,MAX.")] = "1,1,4",
        shots: Annotated[str, typer.Option(help="Support shots profile MIN,OPT,MAX.")] = "1,1,5",
        workspace: Annotated[float, typer.Option(help="Builder workspace limit in GiB.")] = 4.0,
        plugin_library: Annotated[Path | None, typer.Option(help="C++ NdcgPrior plugin (.so) instead of the AOT plugin.")] = None,
        force: Annotated[bool, typer.Option(help="Replace an existing, non-empty --out.")] = False,
    ) -> None:
        """Build TensorRT engines (encoder + matcher) for a model dir; writes engines.json beside them."""
        from icpd.export.fp16 import Fp16ConversionError
        from icpd.export.model_dir import ModelDirError
        from icpd.runtime.engine_sidecar import EngineMismatchError
        from icpd.trt import TensorRTUnavailableError
        from icpd.trt.build import EngineBuildError, build_engines, parse_profile

        try:
            res = build_engines(model, out_dir, precision=precision, batch=parse_profile(batch, "batch"),
                                shots=parse_profile(shots, "shots"), rank_prior=rank_prior,
                                workspace=int(workspace * (1 << 30)), plugin_library=plugin_library, force=force)
        except (ValueError, ModelDirError, EngineBuildError, TensorRTUnavailableError, EngineMismatchError,
                Fp16ConversionError) as e:
            fail(e)
        s = res.sidecar
        out.print(f"wrote {res.path}: {', '.join(s.engines)} engines, {s.precision}, TensorRT {s.env.tensorrt_version} "
                  f"on {s.env.gpu_name}, batch {s.batch}, shots {s.shots} in {res.seconds:.1f} s")

    @app.command("validate")
    def validate_cmd(
        model: Annotated[Path, typer.Option(help="Model directory from `icpd export` (FP32 or FP16).")],
        engines: Annotated[Path | None, typer.Option(help="Engine directory from `icpd build` (for trt).")] = None,
        backends: Annotated[str, typer.Option(help="Comma-separated: torch, ort, trt.")] = "torch,ort",
        runs: Annotated[int, typer.Option(min=1, help="Seeded episodes.")] = 3,
        seed: Annotated[int, typer.Option(help="Seed of the episodes.")] = 0,
        batch: Annotated[int, typer.Option(min=1, help="Query images per episode.")] = 2,
        device: Annotated[str, typer.Option(help="Device of the torch and trt backends: cpu or cuda[:N].")] = "cpu",
        json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here.")] = None,
    ) -> None:
        """Per-output error statistics and mask IoU of each backend against PyTorch FP32; exit 1 on FAIL."""
        from icpd.export.model_dir import ModelDirError
        from icpd.runtime.engine_sidecar import EngineMismatchError
        from icpd.trt import TensorRTUnavailableError
        from icpd.trt.validate import format_report, validate_model, write_report

        names = tuple(b.strip() for b in backends.split(",") if b.strip())
        if "trt" in names and device == "cpu":
            device = "cuda"
        try:
            report = validate_model(model, names, engine_dir=engines, runs=runs, seed=seed, batch=batch, device=device)
        except (ValueError, ModelDirError, TensorRTUnavailableError, EngineMismatchError, RuntimeError) as e:
            fail(e)
        out.print(format_report(report), markup=False, highlight=False, soft_wrap=True)
        if json_out is not None:
            write_report(report, json_out)
            out.print(f"wrote {json_out}")
        if not report.passed:
            raise typer.Exit(code=1)
