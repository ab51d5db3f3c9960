"""Issue 20 §4: the `icpd infer` table stays readable at 80 columns. With 10 classes every cell
used to read "…"; now every class name and every share is printed whole."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from icpd.apps.infer.local import InferSummary, InputResult
from icpd.commands.infer_table import scene_table

CLASSES = ["ship", "storage tank", "baseball diamond", "tennis court", "basketball court",
           "ground track field", "bridge", "large vehicle", "small vehicle", "helicopter"]


def _summary(classes: list[str]) -> InferSummary:
    results = [
        InputResult(path=f"/data/P{i:04d}_scene_with_a_long_name.png", status="ok", height=512, width=640,
                    tiles=20, seconds=1.25 + i,
                    foreground={c: (k + 1 + i) / 1000 for k, c in enumerate(classes)})
        for i in range(3)
    ]
    results.append(InputResult(path="/data/broken.png", status="error", error="broken.png: not an image"))
    return InferSummary(results=results, class_names=classes, summary_path=Path("/runs/out/summary.json"))


def _render(summary: InferSummary, width: int) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(scene_table(summary, width))
    return buffer.getvalue()


def test_ten_classes_at_80_columns_show_every_name_and_share():
    summary = _summary(CLASSES)
    text = _render(summary, 80)
    assert "…" not in text
    assert max(map(len, text.splitlines())) <= 80
    inputs = "".join(line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│"))
    for r in summary.results[:3]:
        assert Path(r.path).name in inputs  # folded over lines, not cut
        for c in CLASSES:  # e.g. "ground track field 0.9%", whole on one line
            assert f"{c} {r.foreground[c]:.1%}" in text, (c, text)
    assert "error" in text and "broken.png" in text


def test_a_table_that_fits_keeps_one_column_per_class():
    summary = _summary(CLASSES[:2])
    text = _render(summary, 80)
    header = next(line for line in text.splitlines() if "input" in line)
    assert "ship" in header and "storage tank" in header and "foreground" not in text
    assert "…" not in text
    wide = _render(_summary(CLASSES), 250)  # a wide terminal: the 10 class columns again
    header = next(line for line in wide.splitlines() if "input" in line)
    assert all(c in header for c in CLASSES), header
