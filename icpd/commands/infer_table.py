"""The table ``icpd infer`` prints: one row per scene, the foreground share of every class.

Wide form (one column per class) where it fits the console; otherwise (10 classes at 80 columns
used to show only "…" in every cell) one ``foreground`` column listing ``<class> <share>`` one
class per line, every name and number whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.table import Table

    from icpd.apps.infer.local import InferSummary, InputResult

TABLE_ROWS = 50  # longer runs: the rest is in summary.json
_FIXED = ("input", "size", "tiles", "s")
_CELL_PAD = 3  # a column's padding (1 + 1) and its border


def _share(r: InputResult, name: str) -> str:
    return f"{r.foreground[name]:.1%}" if name in r.foreground else "-"


def _fixed_cells(r: InputResult) -> list[str]:
    size = f"{r.width}x{r.height}" if r.height is not None else "-"
    return [Path(r.path).name, size, str(r.tiles), f"{r.seconds:.2f}"]


INPUT_FOLD = 16  # a longer file name may be folded over lines (then rows get rules); other cells stay whole


def _widths(rows: list[list[str]]) -> list[int]:
    """Each column's width with its padding and border: its longest cell (file names folded)."""
    widths = [max(len(row[i]) for row in rows) + _CELL_PAD for i in range(len(rows[0]))]
    widths[0] = min(widths[0], INPUT_FOLD + _CELL_PAD)
    return widths


def scene_table(summary: InferSummary, width: int) -> Table:
    """The rich table of ``summary`` for a console ``width`` columns wide (see the module docstring)."""
    from rich.table import Table
    from rich.text import Text

    rows = summary.results[:TABLE_ROWS]
    fixed = [list(_FIXED)] + [_fixed_cells(r) for r in rows]
    shares = [list(summary.class_names)] + [[_share(r, c) for c in summary.class_names] for r in rows]
    status = [["status"], *(["ok" if r.status == "ok" else "error"] for r in rows)]
    wide_widths = _widths([a + b + c for a, b, c in zip(fixed, shares, status)])
    wide = 1 + sum(wide_widths) <= width
    # Text, not str: file and class names are shown as they are, never read as rich markup
    folded = any(len(row[0]) > INPUT_FOLD for row in fixed[1:])
    t = Table(title=Text(f"icpd infer -> {summary.summary_path.parent}"), show_lines=folded or not wide)
    if wide:
        t.add_column(Text("input"), overflow="fold", max_width=wide_widths[0] - _CELL_PAD)
    else:  # the foreground column takes its longest line ("ground track field 12.5%"); the file name folds
        entries = [f"{c} {_share(r, c)}" for r in rows for c in summary.class_names] or [""]
        foreground = min(max(map(len, [*entries, "foreground"])), width // 2)
        others = 1 + sum(_widths(fixed)[1:]) + len("status") + _CELL_PAD + foreground + _CELL_PAD
        t.add_column(Text("input"), overflow="fold", max_width=max(8, width - others - _CELL_PAD))
    t.add_column(Text("size"), no_wrap=True)
    for col in _FIXED[2:]:
        t.add_column(Text(col), justify="right", no_wrap=True)
    if wide:
        for name in summary.class_names:
            t.add_column(Text(name), no_wrap=True)
    else:
        t.add_column(Text("foreground"), min_width=foreground, overflow="fold")
    t.add_column(Text("status"), no_wrap=True)
    for r in rows:
        cells = [_share(r, c) for c in summary.class_names]
        if not wide:  # one line per class in one cell (a failed scene: none)
            cells = ["\n".join(f"{c} {s}" for c, s in zip(summary.class_names, cells)) if r.status == "ok" else "-"]
        state = Text("ok") if r.status == "ok" else Text("error", style="red")
        t.add_row(*map(Text, _fixed_cells(r) + cells), state)
    if len(summary.results) > TABLE_ROWS:
        t.caption = Text(f"{len(summary.results) - TABLE_ROWS} more in {summary.summary_path}")
    return t
