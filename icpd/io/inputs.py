"""Expanding the files and folders a user names into the list of images to process."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from icpd.io.raster import IMAGE_SUFFIXES, ImageError


def list_inputs(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], recursive: bool = False
) -> list[Path]:
    """Expand files and folders into a sorted, de-duplicated list of image files.

    Folders contribute their ``.png .jpg .jpeg .tif .tiff`` files (any case), non-recursively
    unless ``recursive=True``; hidden files (name starting with ``.``) in folders are skipped.
    A file named explicitly must have one of those suffixes. Duplicates (the same file reached
    twice) are kept once. A folder with no images contributes nothing; the caller decides
    whether an empty result is an error.

    Raises:
        ImageError: a path does not exist, or a named file is not a supported image type.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: dict[Path, Path] = {}
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise ImageError(f"input {p} does not exist. Check the path (relative to {Path.cwd()}).")
        if p.is_dir():
            entries = p.rglob("*") if recursive else p.iterdir()
            for entry in entries:
                if (
                    entry.is_file()
                    and not entry.name.startswith(".")
                    and entry.suffix.lower() in IMAGE_SUFFIXES
                ):
                    found.setdefault(entry.resolve(), entry)
        elif p.suffix.lower() in IMAGE_SUFFIXES:
            found.setdefault(p.resolve(), p)
        else:
            raise ImageError(
                f"input {p} is not a supported image (suffix {p.suffix!r}); icpd reads "
                f"{', '.join(IMAGE_SUFFIXES)} (any case)."
            )
    return sorted(found.values(), key=lambda q: str(q))
