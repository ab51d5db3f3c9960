"""``icpd data synth``: write a synthetic iSAID-5i / DLRSD-5i tree (tests, demos, smoke training)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(help="Episodic data sets: synthetic trees for tests and demos.", no_args_is_help=True)

    @data_app.command("synth")
    def synth_cmd(
        out: Annotated[Path, typer.Option("--out", "-o", help="Root directory to create (pass it to --root later).")],
        layout: Annotated[str, typer.Option(help="Folder layout: isaid5i or dlrsd5i.")] = "isaid5i",
        tiles: Annotated[int, typer.Option(min=1, help="Tiles per split (trn and val each); >= 5*(K+1) for K-shot.")] = 30,
        seed: Annotated[int, typer.Option(help="Everything is a function of the seed.")] = 0,
        size: Annotated[int, typer.Option(min=32, help="Tile side in pixels (the DLRSD-5i reader expects 256).")] = 256,
    ) -> None:
        """Procedurally generated aerial-like tiles with labels and fold lists."""
        from rich.console import Console

        from icpd.data import synthesize

        try:
            summary = synthesize(out, layout, tiles, seed, size)  # type: ignore[arg-type]
        except ValueError as e:
            Console(stderr=True).print(f"[bold red]error:[/] {e}")
            raise typer.Exit(code=2) from None
        Console().print(
            f"wrote {summary.root} ({layout}, {tiles} tiles per split, {size} px); list lines "
            f"{summary.list_entries}; fewest tiles of any class: {summary.min_class_tiles()}"
        )

    app.add_typer(data_app, name="data")
