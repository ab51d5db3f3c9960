"""What every command shares: the two consoles, the user-error printer, the preset option's check.

A user error (the project's own error types, bad options) prints one line on stderr and exits 2,
without a traceback; anything else propagates and prints its traceback.
"""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from icpd.config import list_presets

console = Console(stderr=True)  # errors, warnings and progress
out = Console()  # results

PRESET_HELP = "Model preset (see `icpd info`)."


def preset_callback(value: str | None) -> str | None:
    if value is not None and value not in list_presets():
        raise typer.BadParameter(f"unknown preset {value!r}; choose one of {', '.join(list_presets())}")
    return value


def fail(err: Exception | str) -> NoReturn:
    """Print ``err`` as a one-line user error on stderr and exit with code 2."""
    # soft_wrap: paths and key lists stay on one line, copy-pasteable; markup off: messages may hold [..]
    console.print(f"error: {err}", style="red", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)
