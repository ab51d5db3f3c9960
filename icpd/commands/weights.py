"""`icpd fetch-weights`: the one command that downloads, and only with --download."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from icpd.commands.common import fail, note, out


def register(app: typer.Typer) -> None:
    @app.command("fetch-weights")
    def fetch_weights(
        name: Annotated[str, typer.Argument(help="resnet50, vgg16 or remoteclip-vitl14.")],
        download: Annotated[bool, typer.Option(help="Allow the download (nothing is fetched without it).")] = False,
        cache_dir: Annotated[Path | None, typer.Option(help="Where to keep weights (default "
                                                            "~/.cache/icpd/weights).")] = None,
    ) -> None:
        """Locate (or, with --download, fetch) pretrained encoder weights; prints the local path."""
        from icpd.io import OutputPathError
        from icpd.model.pretrained import resolve_weights

        try:
            path = resolve_weights(name, download=download, cache_dir=cache_dir, on_wait=note)
        except FileNotFoundError as e:
            fail(e)
        except OutputPathError as e:  # --cache-dir (or the default cache) cannot be written: before the download
            fail(e)
        out.print(str(path), markup=False, highlight=False)
