"""`icpd export`: a trained ICPD-Net -> an exported, self-checked model directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from icpd.commands.common import PRESET_HELP, QuietOpt, RankPriorOpt, console, fail, out, preset_callback
from icpd.config import Precision


def export_cmd(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Model directory to write.")],
    checkpoint: Annotated[Path | None, typer.Option(help="ICPD-Net checkpoint (.pt or .safetensors).")] = None,
    preset: Annotated[str | None, typer.Option(callback=preset_callback, help=PRESET_HELP)] = None,
    random_weights: Annotated[bool, typer.Option(help="No checkpoint: seeded random weights (latency only).")] = False,
    rank_prior: RankPriorOpt = None,
    precision: Annotated[Precision, typer.Option(help="fp32, or fp16 (FP16 graphs with FP32 islands, for TensorRT 11 "
                                                      "strong typing).")] = Precision.FP32,
    validate: Annotated[bool, typer.Option(help="Check ONNX Runtime against PyTorch before finishing.")] = True,
    force: Annotated[bool, typer.Option(help="Replace an existing, non-empty --out.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Export a trained ICPD-Net: preprocess/encoder/matcher ONNX + weights + model.json, self-checked."""
    from icpd.export.onnx import ExportError, export_model
    from icpd.model.checkpoint import load_checkpoint, seeded_model

    if (checkpoint is None) == (not random_weights):
        fail(ValueError("give --checkpoint C, or --random-weights --preset P for a latency-only model"))
    spinner = console.status(f"exporting to {out_dir} (ONNX, then the self-check) ...")
    if not quiet and console.is_terminal:
        spinner.start()
    try:
        if checkpoint is not None:
            model, source = load_checkpoint(checkpoint, preset=preset), checkpoint.name
        else:
            model, source = seeded_model(preset or "paper", seed=0), "random weights: latency only"
        form = {} if rank_prior is None else {"rank_prior": rank_prior}  # None: the exporter's default form
        if precision == Precision.FP32:
            res = export_model(model, out_dir, validate=validate, force=force, source=source, **form)
        else:
            from icpd.export.fp16 import Fp16ConversionError, convert_model_dir_fp16
            from icpd.io.atomic import scratch_dir
            from icpd.trt.validate import check_fp16_against_fp32

            # the FP32 export it converts from lives beside --out and is removed either way
            with scratch_dir(out_dir, "fp32") as tmp:
                try:
                    res = export_model(model, tmp / "m", validate=validate, source=source, **form)
                    convert_model_dir_fp16(res.path, out_dir, check=check_fp16_against_fp32 if validate else None, force=force)
                    res.path = out_dir
                except Fp16ConversionError as e:
                    raise ExportError(str(e)) from e
    except (ValueError, ExportError) as e:
        fail(e)
    finally:
        spinner.stop()
    worst = res.validation.get("outputs", {}).get("logits", {}).get("max_abs")
    check = f"; logits max |ORT - torch| = {worst:.2e}" if worst is not None else ""
    out.print(f"wrote {res.path} in {res.seconds:.1f} s{check}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
