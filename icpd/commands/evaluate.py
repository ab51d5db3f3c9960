"""``icpd eval``: foreground IoU per novel class, mIoU and FB-IoU of a checkpoint on a fold."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer

from icpd.commands.common import BackendOpt, QuietOpt, console, fail, out, workers_in_range
from icpd.config import Backend


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_cmd(
        dataset: Annotated[str, typer.Option(help="isaid5i or dlrsd5i.")],
        root: Annotated[Path, typer.Option(help="Data set root.")],
        fold: Annotated[int, typer.Option(min=0, max=2, help="Fold whose 5 novel classes are scored.")],
        checkpoint: Annotated[Path | None, typer.Option(help="ICPD-Net checkpoint (.pt or "
                                                             ".safetensors), run in PyTorch.")] = None,
        model: Annotated[Path | None, typer.Option("--model", "-m",
                                                   help="Exported model directory (`icpd "
                                                        "export`), run by --backend.")] = None,
        engines: Annotated[Path | None, typer.Option(help="TensorRT engine dir (with --backend trt).")] = None,
        shot: Annotated[int, typer.Option(min=1, help="Support images per episode.")] = 1,
        preset: Annotated[str | None, typer.Option(help="Model preset. Default: from the "
                                                        "checkpoint, else paper.")] = None,
        class_embeddings: Annotated[Path | None, typer.Option(
            help="Class embeddings (15 x D). Default: the file recorded in a checkpoint by `icpd train`."
        )] = None,
        backend: BackendOpt = Backend.TORCH,
        batch_size: Annotated[int, typer.Option(min=1, help="Episodes per forward pass.")] = 8,
        workers: Annotated[int, typer.Option(min=0, callback=workers_in_range,
                                             help="DataLoader worker processes.")] = 0,
        device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
        amp: Annotated[bool, typer.Option("--amp/--no-amp", help="Autocast on CUDA.")] = False,
        seed: Annotated[int, typer.Option(help="Episode sampling seed.")] = 0,
        episodes: Annotated[int | None, typer.Option(min=1,
                                                     help="Score only this many evenly spaced episodes.")] = None,
        json_out: Annotated[Path | None, typer.Option("--json", help="Write the scores as JSON here.")] = None,
        quiet: QuietOpt = False,
    ) -> None:
        """Score a checkpoint on a fold's validation episodes (novel classes)."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        from icpd.training.evaluate import EvalConfig, result_table, run_evaluation
        from icpd.training.metrics import format_score

        cfg = EvalConfig(
            dataset, root, fold, shot, checkpoint, preset, class_embeddings, backend.value, batch_size, workers, device,
            amp, seed, episodes, model, engines,
        )
        show = not quiet and console.is_terminal
        try:
            # --json claimed before the evaluation: writable, and no other run writing the same file
            with _claim_json(json_out):
                with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console,
                              disable=not show, transient=True) as progress:
                    result = run_evaluation(cfg, progress)
                if json_out is not None:
                    result.write_json(json_out, dataset=dataset, fold=fold, shot=shot, backend=backend.value,
                                      checkpoint=str(checkpoint) if checkpoint else None,
                                      model=str(model) if model else None)
        except (ValueError, OSError) as e:
            fail(e)
        name = checkpoint.name if checkpoint is not None else f"{model.name} ({backend.value})"
        if not quiet:
            out.print(result_table(result, f"{dataset} fold {fold}, {shot}-shot: {name}"))
        out.print(f"mIoU {format_score(result.miou)}  FB-IoU {format_score(result.fb_iou)}  "
                  f"({result.episodes} episodes, {result.episodes_per_second:.1f} episodes/s)", highlight=False)
        if json_out is not None and not quiet:
            out.print(f"wrote {json_out}", markup=False, highlight=False)


def _claim_json(json_out: Path | None) -> Any:
    """Hold ``--json`` for the run (:func:`icpd.io.outputs.claim_output`); nothing to hold without it.

    Raises (on entry): OutputPathError: the file cannot be written; LockHeldError: another run writes it.
    """
    from icpd.io.outputs import claim_output

    return contextlib.nullcontext() if json_out is None else claim_output(json_out, "eval")
