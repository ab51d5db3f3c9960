"""`icpd fetch-weights`: the one command that downloads, and only with --download."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from icpd.commands.common import fail, out


def register(app: typer.Typer) -> None:
    @app.command("fetch-weights")
    def fetch_weights(
        name: Annotated[str, typer.Argument(help="resnet50, vgg16 or remoteclip-vitl14.")],
        download: Annotated[bool, typer.Option(help="Allow the download (nothing is fetched without it).")] = False,
        cache_dir: Annotated[Path | None, typer.Option(help="Where to keep weights (default ~/.cache/icpd/weights).")] = None,
    ) -> None:
        """Locate (or, with --download, fetch) pretrained encoder weights; prints the local path."""
        from icpd.model.pretrained import resolve_weights

        try:
            path = resolve_weights(name, download=download, cache_dir=cache_dir)
        except FileNotFoundError as e:
            fail(e)
        out.print(str(path), markup=False, highlight=False)
