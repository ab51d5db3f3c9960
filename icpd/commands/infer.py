"""``icpd infer``: segment scenes of any size with an exported model and cached support sets."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from icpd.commands.common import (
    BackendOpt,
    BandsOpt,
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
    note,
    out,
)
from icpd.commands.infer_table import scene_table
from icpd.config import Backend

if TYPE_CHECKING:
    from rich.console import Console

    from icpd.apps.infer.local import InputResult

SOME_INPUTS_FAILED = 1  # exit code: the run finished, some scenes failed (README "Exit codes")


LONG_SCENE_TILES = 2000  # a scene with more tiles gets a line saying so before it starts
NOTE_REPEATS = 3  # the same conversion note is printed for this many scenes, then counted (a 10,000-scene run)


class _RichProgress:
    """One bar over inputs, one over tiles with tiles/s and ETA (icpd.apps.infer.local.InferProgress).
    ``per_scene``: the tile bar restarts per scene (single process); else it spans the run (Ray)."""

    def __init__(self, console: Console, inputs: int, enabled: bool, quiet: bool, per_scene: bool = True) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console, self.quiet, self.per_scene = console, quiet, per_scene
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                            TextColumn("{task.fields[rate]}"),
                            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                            console=console, disable=not enabled, transient=False)
        self.scenes = self.bar.add_task("scenes", total=inputs, rate="")
        self.tiles = self.bar.add_task("tiles", total=1, rate="")
        self.seen: Counter[str] = Counter()  # note text -> scenes that had it
        self.resumed = 0

    def start_input(self, path: Path) -> None:
        if self.per_scene:
            self.bar.reset(self.tiles, total=1, description=f"tiles  {path.name}", rate="")

    def _note(self, text: str) -> None:
        if not self.quiet:
            note(text, self.console)

    def scene_planned(self, path: Path, height: int, width: int, tiles: int) -> None:
        if tiles >= LONG_SCENE_TILES:
            self._note(f"{path.name}: {width}x{height} px -> {tiles} tiles (see --tile)")

    def tiles_done(self, done: int, total: int) -> None:
        task = self.bar.tasks[self.tiles]
        speed = task.speed
        self.bar.update(self.tiles, completed=done, total=total, rate=f"{speed:.1f} tiles/s" if speed else "")

    def finish_input(self, result: InputResult) -> None:
        self.bar.advance(self.scenes)
        if result.resumed_from is not None:
            self.resumed += 1  # its notes were shown by the run that made it; counted in close()
            return
        for line in result.notes:  # grayscale, RGBA, uint16, --bands, EXIF rotation: not only in summary.json
            self.seen[line] += 1
            if self.seen[line] <= NOTE_REPEATS:
                self._note(f"{Path(result.path).name}: {line}")

    def close(self) -> None:
        """The counts of what finish_input did not print one by one."""
        for line, scenes in self.seen.items():
            if scenes > NOTE_REPEATS:
                self._note(f"{scenes - NOTE_REPEATS} more scene(s): {line} (each scene's notes: summary.json)")
        if self.resumed:
            self._note(f"{self.resumed} scene(s) complete in earlier runs (outputs checked by sha256): not redone")


def infer_cmd(
    inputs: Annotated[list[Path], typer.Argument(help="Images (PNG/JPEG/TIFF) or folders of them.",
                                                 show_default=False)],
    model: ModelDirOpt,
    support: Annotated[list[Path], typer.Option("--support", "-s",
                                                help="Support cache of one class (`icpd "
                                                     "cache-support`); repeat per class.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder (created if missing).")],
    backend: BackendOpt = Backend.ORT,
    engines: EnginesOpt = None,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    threshold: ThresholdOpt = 0.5,
    tile: TileOpt = None,
    overlap: OverlapOpt = 32,
    batch: TileBatchOpt = 8,
    save_probs: Annotated[bool, typer.Option("--save-probs",
                                             help="Also write <stem>_prob_<class>.png: grey, pixel "
                                                  "value = round(probability x 255).")] = False,
    save_priors: Annotated[bool, typer.Option("--save-priors",
                                              help="Also write <stem>_prior_<class>.png heat maps.")] = False,
    recursive: Annotated[bool, typer.Option("--recursive", "-r",
                                            help="Descend into sub-folders of folder inputs.")] = False,
    bands: BandsOpt = None,
    ray: Annotated[str | None, typer.Option("--ray", help="Run on Ray: `--ray` alone (or `local`) starts a local Ray, "
                                                          "`--ray auto` or `--ray ray://HOST:10001` joins a cluster. "
                                                          "Needs the ray extra: pip install 'icpd\\[ray]'.",
                                            show_default=False)] = None,
    actors: Annotated[int, typer.Option("--actors", help="With --ray: predictor actors (one per GPU on a GPU cluster).",
                                        min=1)] = 1,
    quiet: QuietOpt = False,
) -> None:
    """Segment scenes of any size, window by window.

    Writes <stem>_labels.png/.tif, <stem>_overlay, summary.json, runs/<run>.jsonl."""
    from icpd.apps.infer.local import InferOptions, collect_inputs, infer_paths, open_predictor
    from icpd.io import ImageError, OutputPathError, ensure_writable

    try:
        # cheap checks first (options, the input list: listed once, here, the output folder), the model takes seconds
        options = InferOptions(threshold=threshold, tile=tile, overlap=overlap, batch=batch, save_probs=save_probs,
                               save_priors=save_priors, recursive=recursive, bands=bands)
        listed = collect_inputs(inputs, out_dir, recursive)
        ensure_writable(out_dir, folder=True)  # checked, not created: a run refused later leaves no folder
        predictor = open_predictor(model, support, backend=backend.value, device=device, threads=threads,
                                   engine_dir=engines)
        options = options.for_model(predictor.preset.image_size)
        progress = _RichProgress(console, len(listed.paths), enabled=console.is_terminal and not quiet, quiet=quiet,
                                 per_scene=ray is None)
        with progress.bar:
            if ray is None:
                summary = infer_paths(predictor, listed, out_dir, options, progress)
            else:
                from icpd.apps.infer.ray_runner import infer_paths_ray

                summary = infer_paths_ray(predictor, model, support, listed, out_dir, options, address=ray,
                                          actors=actors, backend=backend.value, threads=threads, progress=progress,
                                          device=device, engine_dir=engines)
        progress.close()
    except (ImageError, ValueError, ImportError, OutputPathError) as e:
        fail(e)
    except KeyboardInterrupt:
        console.print(f"interrupted: {out_dir / 'summary.json'} lists the scenes done (\"interrupted\": true); "
                      "run the same command again to go on (complete scenes are skipped)", markup=False,
                      highlight=False, soft_wrap=True)
        raise typer.Exit(code=130) from None
    if not quiet:
        out.print(scene_table(summary, out.width))
    for r in summary.failed:
        console.print(f"error: {r.error}", style="red", markup=False, highlight=False, soft_wrap=True)
    ok = len(summary.results) - len(summary.failed)
    # the result line goes where every command's goes (stdout); the scenes' errors above stay on stderr
    out.print(f"{ok} of {len(summary.results)} scene(s) segmented; wrote {summary.summary_path}",
              markup=False, highlight=False, soft_wrap=True)
    if summary.failed:
        raise typer.Exit(code=SOME_INPUTS_FAILED)


RAY_ADDRESS = re.compile(r"^(auto|local|[a-z]+://\S+|[\w.\-]+:\d+)$")


def ray_flag_argv(argv: list[str]) -> list[str]:
    """``--ray`` given without an address becomes ``--ray local`` (Typer options need a value):
    the next word is an address only if it looks like one (auto, local, scheme://..., host:port)."""
    out = list(argv)
    for i, word in enumerate(out):
        if word == "--ray" and (i + 1 == len(out) or not RAY_ADDRESS.match(out[i + 1])):
            out.insert(i + 1, "local")
            break
    return out


def register(app: typer.Typer) -> None:
    app.command("infer")(infer_cmd)
