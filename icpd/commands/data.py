"""``icpd data synth``: write a synthetic iSAID-5i / DLRSD-5i tree (tests, demos, smoke training)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from icpd.commands.common import QuietOpt, fail, out


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(help="Episodic data sets: synthetic trees for tests and demos.", no_args_is_help=True)

    @data_app.command("synth")
    def synth_cmd(
        out_dir: Annotated[Path, typer.Option("--out", "-o", help="Root directory to create (pass it to --root later).")],
        layout: Annotated[str, typer.Option(help="Folder layout: isaid5i or dlrsd5i.")] = "isaid5i",
        tiles: Annotated[int, typer.Option(min=1, help="Tiles per split (trn and val each); >= 5*(K+1) for K-shot.")] = 30,
        seed: Annotated[int, typer.Option(help="Everything is a function of the seed.")] = 0,
        size: Annotated[int, typer.Option(min=32, help="Tile side in pixels (the DLRSD-5i reader expects 256).")] = 256,
        quiet: QuietOpt = False,  # as on every long command; synth prints nothing but its result line anyway
    ) -> None:
        """Procedurally generated aerial-like tiles with labels and fold lists."""
        from icpd.data import synthesize

        try:
            summary = synthesize(out_dir, layout, tiles, seed, size)  # type: ignore[arg-type]
        except ValueError as e:
            fail(e)
        out.print(
            f"wrote {summary.root} ({layout}, {tiles} tiles per split, {size} px); list lines "
            f"{summary.list_entries}; fewest tiles of any class: {summary.min_class_tiles()}",
            markup=False, highlight=False,
        )

    app.add_typer(data_app, name="data")
