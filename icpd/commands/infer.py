"""``icpd infer``: segment scenes of any size with an exported model and cached support sets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from icpd.commands.common import (
    BackendOpt,
    DeviceOpt,
    EnginesOpt,
    ModelDirOpt,
    OverlapOpt,
    QuietOpt,
    ThreadsOpt,
    ThresholdOpt,
    TileBatchOpt,
    TileOpt,
    console,
    fail,
    out,
)
from icpd.config import Backend

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from icpd.runtime.infer import InferSummary, InputResult

TABLE_ROWS = 50  # longer runs: the rest is in summary.json


class _RichProgress:
    """One bar over inputs, one over the current scene's tiles (icpd.runtime.infer.InferProgress)."""

    def __init__(self, console: Console, inputs: int, enabled: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=console, disable=not enabled, transient=False)
        self.scenes = self.bar.add_task("scenes", total=inputs)
        self.tiles = self.bar.add_task("tiles", total=1)

    def start_input(self, path: Path) -> None:
        self.bar.reset(self.tiles, total=1, description=f"tiles  {path.name}")

    def tiles_done(self, done: int, total: int) -> None:
        self.bar.update(self.tiles, completed=done, total=total)

    def finish_input(self, result: InputResult) -> None:
        self.bar.advance(self.scenes)


def _table(summary: InferSummary) -> Table:
    from rich.table import Table
    from rich.text import Text

    # Text, not str: file and class names are shown as they are, never read as rich markup
    t = Table(title=Text(f"icpd infer -> {summary.summary_path.parent}"))
    for col in ("input", "size", "tiles", "s", *summary.class_names, "status"):
        t.add_column(Text(col), justify="right" if col in ("tiles", "s") else "left")
    for r in summary.results[:TABLE_ROWS]:
        size = f"{r.width}x{r.height}" if r.height is not None else "-"
        fg = [f"{r.foreground[c]:.1%}" if c in r.foreground else "-" for c in summary.class_names]
        status = "ok" if r.status == "ok" else "[red]error[/red]"
        t.add_row(Text(Path(r.path).name), size, str(r.tiles), f"{r.seconds:.2f}", *fg, status)
    if len(summary.results) > TABLE_ROWS:
        t.caption = Text(f"{len(summary.results) - TABLE_ROWS} more in {summary.summary_path}")
    return t


def infer_cmd(
    inputs: Annotated[list[Path], typer.Argument(help="Images (PNG/JPEG/TIFF) or folders of them.", show_default=False)],
    model: ModelDirOpt,
    support: Annotated[list[Path], typer.Option("--support", "-s", help="Support cache of one class (`icpd cache-support`); repeat per class.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder (created if missing).")],
    backend: BackendOpt = Backend.ORT,
    engines: EnginesOpt = None,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    threshold: ThresholdOpt = 0.5,
    tile: TileOpt = None,
    overlap: OverlapOpt = 32,
    batch: TileBatchOpt = 8,
    save_probs: Annotated[bool, typer.Option("--save-probs", help="Also write <stem>_prob_<class>.png (0..255).")] = False,
    save_priors: Annotated[bool, typer.Option("--save-priors", help="Also write <stem>_prior_<class>.png heat maps.")] = False,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders of folder inputs.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Segment scenes of any size: tiles, blends, writes <stem>_labels.png, <stem>_overlay.png, summary.json."""
    from icpd.io import ImageError
    from icpd.runtime.infer import InferOptions, collect_inputs, infer_paths, open_predictor

    try:
        # cheap checks first (options, then the input list: listed once, here), the model takes seconds to load
        options = InferOptions(threshold=threshold, tile=tile, overlap=overlap, batch=batch, save_probs=save_probs,
                               save_priors=save_priors, recursive=recursive)
        listed = collect_inputs(inputs, out_dir, recursive)
        predictor = open_predictor(model, support, backend=backend.value, device=device, threads=threads,
                                   engine_dir=engines)
        options = options.for_model(predictor.preset.image_size)
        progress = _RichProgress(console, len(listed.paths), enabled=console.is_terminal and not quiet)
        with progress.bar:
            summary = infer_paths(predictor, listed, out_dir, options, progress)
    except (ImageError, ValueError, ImportError) as e:
        fail(e)
    if not quiet:
        out.print(_table(summary))
    for r in summary.failed:
        console.print(f"error: {r.error}", style="red", markup=False, highlight=False, soft_wrap=True)
    ok = len(summary.results) - len(summary.failed)
    console.print(f"{ok} of {len(summary.results)} scene(s) segmented; wrote {summary.summary_path}",
                  markup=False, highlight=False, soft_wrap=True)
    if summary.failed:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    app.command("infer")(infer_cmd)
