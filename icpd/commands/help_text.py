"""How ``--help`` shows options: flags without a ``<bool>`` type column.

Typer (0.2x with Click 8.2+) prints a value type next to every option, ``<bool>`` included, so
``--force --no-force <bool>`` reads as if the flag took a value. A flag takes none: its type
column is left empty. Options with values keep ``<int>``, ``<path>``, ``<topk|sort|plugin>``, ...
"""

from __future__ import annotations

from typing import Any

import typer.core

_PATCHED = "_icpd_plain_flags"


def plain_flag_help() -> None:
    """Make every Typer option that is a flag show no type in ``--help`` (idempotent).

    Called once by ``icpd.cli`` when it builds the app; a patch of Typer's one display hook because
    the flags live in a dozen command modules (and ``--help`` itself is Typer's own).
    """
    cls = typer.core.TyperOption
    if getattr(cls, _PATCHED, False):
        return
    shown = cls.display_type_rich

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    cls.display_type_rich = display_type_rich  # type: ignore[method-assign]
    setattr(cls, _PATCHED, True)
