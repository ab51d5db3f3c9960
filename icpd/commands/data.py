"""``icpd data synth``: write a synthetic iSAID-5i / DLRSD-5i tree and its class embeddings
(tests, demos, the README's first-hour walkthrough)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from icpd.commands.common import QuietOpt, fail, fail_os_error, out, preset_callback


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(help="Episodic data sets: synthetic trees for tests and demos.", no_args_is_help=True)

    @data_app.command("synth")
    def synth_cmd(
        out_dir: Annotated[Path, typer.Option("--out", "-o",
                                              help="Root directory to create (pass it to --root later).")],
        layout: Annotated[str, typer.Option(help="Folder layout: isaid5i or dlrsd5i.")] = "isaid5i",
        tiles: Annotated[int, typer.Option(min=1, help="Tiles per split (trn and val each); "
                                                       ">= 5*(K+1) for K-shot.")] = 30,
        seed: Annotated[int, typer.Option(help="Everything is a function of the seed.")] = 0,
        size: Annotated[int, typer.Option(min=32, help="Tile side in pixels (the DLRSD-5i reader expects 256).")] = 256,
        zoom: Annotated[float, typer.Option(
            min=0.25, max=8.0,
            help="Ground-resolution factor: 2 draws everything twice as long (objects cover 4x the tile area). "
                 "The tiny preset's 128 px input needs 2 to see the small objects.",
        )] = 1.0,
        preset: Annotated[str, typer.Option(
            callback=preset_callback,
            help="Write class_embeddings_<preset>.safetensors (15 x the preset's embedding dim) into --out for "
                 "`icpd train` / `icpd cache-support`: synthetic (seeded random unit vectors), not text embeddings.",
        )] = "tiny",
        quiet: QuietOpt = False,  # as on every long command
    ) -> None:
        """Procedurally generated aerial-like tiles with labels, fold lists and synthetic class embeddings."""
        from icpd.commands.progress import step
        from icpd.data import synthesize
        from icpd.data.synthetic_embeddings import write_synthetic_embeddings
        from icpd.io.outputs import claim_output

        try:
            # before drawing the tiles: --out writable, and no other synth writing it (two runs would
            # interleave their tiles and lists; the second is refused at once with the first's pid)
            with claim_output(out_dir, "data synth", folder=True):
                with step(f"drawing {2 * tiles} tiles", quiet=quiet):
                    summary = synthesize(out_dir, layout, tiles, seed, size, zoom)  # type: ignore[arg-type]
                emb = write_synthetic_embeddings(out_dir, layout, preset, seed)
        except ValueError as e:
            fail(e)
        except OSError as e:  # on a path: one line, exit 2
            if e.filename is None:
                raise
            fail_os_error(e)
        out.print(
            f"wrote {summary.root} ({layout}, {tiles} tiles per split, {size} px, zoom {zoom:g}) and {emb} "
            f"(synthetic class embeddings for preset {preset}); list lines {summary.list_entries}; "
            f"fewest tiles of any class: {summary.min_class_tiles()}",
            markup=False, highlight=False,
        )

    app.add_typer(data_app, name="data")
