"""`icpd export`: a trained ICPD-Net -> an exported, self-checked model directory."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from icpd.commands.common import (
    PRESET_HELP,
    QuietOpt,
    RankPriorOpt,
    fail,
    fail_os_error,
    finite_number,
    out,
    preset_callback,
)
from icpd.commands.progress import step
from icpd.config import Precision

if TYPE_CHECKING:
    from icpd.export.onnx import ExportResult

RUNTIME_ONLY_HELP = ("Leave out the PyTorch weights (model.safetensors, about half of a paper-preset dir): for edge "
                     "hosts running ONNX Runtime or TensorRT; the torch backend refuses such a dir.")
PRECISION_HELP = ("fp32; fp16 (FP16 graphs with FP32 islands, for TensorRT 11 strong typing); or int8 (CPU / ONNX "
                  "Runtime: the encoder's MatMuls in INT8, the matcher FP32; self-checked against FP32).")


def export_cmd(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Model directory to write.")],
    checkpoint: Annotated[Path | None, typer.Option(help="ICPD-Net checkpoint (.pt or .safetensors).")] = None,
    preset: Annotated[str | None, typer.Option(callback=preset_callback, help=PRESET_HELP)] = None,
    random_weights: Annotated[bool, typer.Option(help="No checkpoint: seeded random weights (latency only).")] = False,
    rank_prior: RankPriorOpt = None,
    precision: Annotated[Precision, typer.Option(help=PRECISION_HELP)] = Precision.FP32,
    calibration: Annotated[Path | None, typer.Option(help="With --precision int8: a folder of images to calibrate on "
                                                          "(default: built-in synthetic tiles); recorded in "
                                                          "model.json.")] = None,
    int8_exclude: Annotated[list[str] | None, typer.Option(
        "--int8-exclude", help="With --precision int8: blocks or MatMuls to keep FP32 (fnmatch pattern on the names "
                               "model.json int8.mixed_precision lists, e.g. '*resblocks.23.*'; repeatable).")] = None,
    int8_min_speedup: Annotated[float | None, typer.Option(
        "--int8-min-speedup", callback=finite_number,
        help="With --precision int8: refuse (write nothing) if the INT8 encoder, after blocks "
             "kept FP32, is not at least this many times as fast as FP32 on this CPU.")] = None,
    validate: Annotated[bool, typer.Option(help="Check ONNX Runtime against PyTorch (and INT8 "
                                                "against FP32) before finishing.")] = True,
    force: Annotated[bool, typer.Option(help="Replace an existing model dir at --out.")] = False,
    runtime_only: Annotated[bool, typer.Option("--runtime-only", help=RUNTIME_ONLY_HELP)] = False,
    quiet: QuietOpt = False,
) -> None:
    """Export a trained ICPD-Net: preprocess/encoder/matcher ONNX + weights + model.json, self-checked."""
    from icpd.artifacts.model_dir import ModelDirError
    from icpd.export.onnx import ExportError

    if (checkpoint is None) == (not random_weights):
        fail(ValueError("give --checkpoint C, or --random-weights --preset P for a latency-only model"))
    if calibration is not None and precision != Precision.INT8:
        fail(ValueError("--calibration is for --precision int8"))
    if calibration is not None and not calibration.is_dir():
        fail(ValueError(f"--calibration {calibration}: not a folder; give a folder of PNG/JPEG/TIFF images"))
    if (int8_exclude or int8_min_speedup is not None) and precision != Precision.INT8:
        fail(ValueError("--int8-exclude and --int8-min-speedup are for --precision int8"))
    if int8_min_speedup is not None and not int8_min_speedup > 0:
        fail(ValueError(f"--int8-min-speedup {int8_min_speedup:g}: give a ratio above 0 (e.g. 1.25)"))
    int8_opts = {"exclude": tuple(int8_exclude or ()), "min_speedup": int8_min_speedup}
    try:
        with _lock_out(out_dir, force):  # before any work: a second export into --out is refused at once
            res, int8_check = _export(out_dir, checkpoint, preset, rank_prior, precision, calibration, validate, force,
                                      runtime_only, quiet, int8_opts)
    except (ValueError, ExportError, ModelDirError) as e:
        fail(e)
    except OSError as e:  # on a path: one line, exit 2
        if e.filename is None:
            raise
        fail_os_error(e)
    if int8_check is not None and not quiet:
        from icpd.apps.validate import format_int8_check

        out.print(format_int8_check(int8_check), markup=False, highlight=False, soft_wrap=True)
    worst = res.validation.get("outputs", {}).get("logits", {}).get("max_abs")
    check = f"; logits max |ORT - torch| = {worst:.2e}" if worst is not None else ""
    kind = precision.value + (", runtime-only" if runtime_only else "")
    out.print(f"wrote {res.path} ({kind}) in {res.seconds:.1f} s{check}", markup=False, highlight=False)


def _export(out_dir: Path, checkpoint: Path | None, preset: str | None, rank_prior: Any, precision: Precision,
            calibration: Path | None, validate: bool, force: bool, runtime_only: bool,
            quiet: bool, int8_opts: dict[str, Any] | None = None) -> tuple[ExportResult, dict[str, Any] | None]:
    """Build the model and write the model dir; the export's result and the INT8 self-check's report."""
    from icpd.artifacts.model_dir import write_runtime_only
    from icpd.export.onnx import export_model
    from icpd.io.atomic import scratch_dir
    from icpd.model.checkpoint import load_checkpoint, seeded_model

    with step("building the model", quiet):
        if checkpoint is not None:
            model, source = load_checkpoint(checkpoint, preset=preset), checkpoint.name
        else:
            model, source = seeded_model(preset or "paper", seed=0), "random weights: latency only"
    form = {} if rank_prior is None else {"rank_prior": rank_prior}  # None: the exporter's default form
    what = "exporting ONNX graphs" + (" and checking them against PyTorch" if validate else "")
    if precision == Precision.FP32:
        with step(f"{what} -> {out_dir}", quiet):
            return export_model(model, out_dir, validate=validate, force=force, source=source, lock=False,
                                runtime_only=runtime_only, **form), None
    # the FP32 export it converts from lives beside --out and is removed either way
    int8_check = None
    with scratch_dir(out_dir, "fp32") as tmp:
        with step(f"{what} (FP32, converted next)", quiet):
            res = export_model(model, tmp / "m", validate=validate, source=source, **form)
        # the converters copy the PyTorch weights; a runtime-only dir is made from their output without them
        target = tmp / "converted" if runtime_only else out_dir
        if precision == Precision.FP16:
            _to_fp16(res.path, target, validate, force, quiet)
        else:
            int8_check = _to_int8(res.path, target, calibration, validate, force, quiet, **(int8_opts or {}))
        if runtime_only:
            write_runtime_only(target, out_dir, force=force)
        res.path = out_dir
    return res, int8_check


def _to_fp16(src: Path, out_dir: Path, validate: bool, force: bool, quiet: bool) -> None:
    from icpd.apps.validate import check_fp16_against_fp32
    from icpd.export.fp16 import Fp16ConversionError, convert_model_dir_fp16
    from icpd.export.onnx import ExportError

    try:
        with step("converting to FP16" + (" and checking against FP32" if validate else ""), quiet):
            convert_model_dir_fp16(src, out_dir, check=check_fp16_against_fp32 if validate else None, force=force)
    except Fp16ConversionError as e:
        raise ExportError(str(e)) from e


def _to_int8(src: Path, out_dir: Path, calibration: Path | None, validate: bool, force: bool, quiet: bool,
             exclude: tuple[str, ...] = (), min_speedup: float | None = None) -> dict[str, Any] | None:
    """Quantize the FP32 export at ``src`` into ``out_dir``; the INT8 self-check's report (None without --validate)."""
    from icpd.apps.validate import check_int8_against_fp32
    from icpd.export.mixed_precision import summary_line
    from icpd.export.onnx import ExportError
    from icpd.export.quantize import DEFAULT_OPTIONS, Int8ConversionError, convert_model_dir_int8

    def check(fp32_dir: Path, int8_dir: Path) -> dict[str, Any]:
        with step("INT8 self-check against FP32 (seeded episodes)", quiet):
            return check_int8_against_fp32(fp32_dir, int8_dir)

    try:
        with step("quantizing the encoder to INT8", quiet):
            md = convert_model_dir_int8(src, out_dir, DEFAULT_OPTIONS, calibration=calibration,
                                        check=check if validate else None, force=force, exclude=exclude,
                                        min_speedup=min_speedup)
    except Int8ConversionError as e:
        raise ExportError(str(e)) from e
    if not quiet:  # what stayed FP32 and the speed-up left, in one line
        out.print(summary_line(md.meta["int8"]["mixed_precision"]), markup=False, highlight=False, soft_wrap=True)
    return md.meta["int8"].get("check")


@contextlib.contextmanager
def _lock_out(out_dir: Path, force: bool) -> Iterator[None]:
    """Before minutes of work: --out can be written (the export is assembled next to it), no other
    export is writing it (``<--out>.lock``, held for the body), and it is new or empty, or with
    --force a model dir (nothing else is replaced).

    Raises:
        OSError: the parent folder cannot be written; ValueError: another run holds --out
            (``LockHeldError``), or --out is there and may not be replaced (``ModelDirError``); ExportError:
            --out is not empty and --force is not given.
    """
    from icpd.artifacts.model_dir import check_replaceable
    from icpd.export.onnx import ExportError
    from icpd.io import ensure_writable
    from icpd.io.locks import exclusive_lock

    ensure_writable(out_dir.parent, folder=True)
    with exclusive_lock(out_dir, "export"):
        if force:
            check_replaceable(out_dir)
        elif out_dir.is_file():
            raise ExportError(f"--out {out_dir}: is a file; choose a folder (a new one, or an empty one)")
        elif out_dir.is_dir() and any(out_dir.iterdir()):
            raise ExportError(f"--out {out_dir}: exists and is not empty; pass "
                              "--force to replace it or choose another folder")
        yield


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
