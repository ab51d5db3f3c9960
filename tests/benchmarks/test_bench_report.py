"""The terminal table and the Markdown report with its plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from icpd.benchmarks.report import RANDOM_WEIGHTS_NOTE, render_summary_table, write_markdown_report
from icpd.benchmarks.schema import make_document, make_result

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def doc(random_weights: bool) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    results = []
    for backend, sigma in (("torch-cpu", 0.02), ("onnxruntime-cpu", 0.3)):  # the second is noisy
        for stage, ms in (("preprocessing", 1.0), ("encoder", 6.0), ("matcher", 2.0), ("end_to_end", 9.5)):
            results.append(make_result(
                scenario="5shot|512", backend=backend, precision="fp32", stage=stage,
                batch=1, shots=5, classes=1, samples_ms=(ms * rng.lognormal(0, sigma, 50)).tolist(),
            ))  # fmt: skip
    results.append(make_result(
        scenario="1shot-256", backend="torch-cpu", precision="fp16", stage="encoder",
        batch=4, shots=1, classes=1, samples_ms=[2.0, 2.1, 2.2],
    ))  # fmt: skip
    return make_document(results, environment={"cpu_model": "test cpu", "cpu_int8_flags": [], "gpus": None,
                                                "env": {"OMP": "2"}},
                         random_weights=random_weights)  # fmt: skip


def table_text(d: dict[str, Any], width: int = 250) -> str:
    console = Console(width=width, record=True)
    console.print(render_summary_table(d))
    return console.export_text()


def test_summary_table_rows_and_high_cv_marker() -> None:
    text = table_text(doc(random_weights=False))
    for header in ("scenario", "shots", "classes", "batch", "backend", "e2e ms", "p90", "encoder", "matcher", "CV %"):
        assert header in text
    lines = [line for line in text.splitlines() if "5shot|512" in line]
    assert len(lines) == 2  # one row per configuration, stages side by side
    assert "⚠" in next(line for line in lines if "onnxruntime-cpu" in line)  # sigma 0.3: CV ~ 30 %
    assert "⚠" not in next(line for line in lines if "torch-cpu" in line)
    assert RANDOM_WEIGHTS_NOTE not in text


def _bench_like_doc() -> dict[str, Any]:
    """The scenarios `icpd bench` runs (1- and 5-shot rows), on three backends, paper-sized times."""
    rng = np.random.default_rng(1)
    results = []
    for backend in ("ort-cpu", "torch-cpu", "torch-cuda"):
        for scenario, shots, classes, batch in (("uncached", 1, 1, 1), ("uncached", 5, 1, 1), ("cached", 1, 1, 1),
                                                ("cached", 5, 1, 1), ("classes", 1, 5, 1), ("batch", 1, 1, 4)):
            for stage, ms in (("encoder", 1234.5), ("matcher", 98.7 * shots), ("end_to_end", 1456.7 + 100 * shots)):
                results.append(make_result(
                    scenario=scenario, backend=backend, precision="fp32", stage=stage, batch=batch, shots=shots,
                    classes=classes, samples_ms=(ms * rng.lognormal(0, 0.02, 20)).tolist(),
                ))  # fmt: skip
    return make_document(results, environment={}, random_weights=True)


def test_terminal_table_fits_80_columns_and_shows_shots() -> None:
    """Guards issue 10 defect 12: the 13-column table wrapped into `ba…`/`to…` in an 80-column
    terminal and had no shots column, so a scenario's 1-shot and 5-shot rows looked identical."""
    d = _bench_like_doc()
    text = table_text(d, width=80)
    assert "…" not in text
    assert all(len(line) <= 80 for line in text.splitlines())
    header = next(line for line in text.splitlines() if "scenario" in line)
    assert header.split() == ["scenario", "shots", "classes", "batch", "backend", "e2e", "ms", "p90", "encoder",
                              "matcher", "CV", "%"]
    cached = [line.split() for line in text.splitlines() if line.startswith("cached") and "ort-cpu" in line]
    assert sorted(row[1] for row in cached) == ["1", "5"]  # the shots tell the two cached rows apart
    assert len({tuple(row) for row in cached}) == 2


def test_markdown_table_has_shots_and_classes(tmp_path: Path) -> None:
    """Guards issue 10 defect 12: report.md keeps the full table, now with shots and classes."""
    text = write_markdown_report(_bench_like_doc(), tmp_path).read_text()
    header = next(line for line in text.splitlines() if line.startswith("| scenario"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[:7] == ["scenario", "backend", "precision", "stage", "batch", "shots", "classes"]
    assert "p99 ms" in cells and "items/s" in cells
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| cached | ort-cpu | fp32 | end_to_end")]
    assert sorted(r[5] for r in rows) == ["1", "5"]


def test_random_weights_are_announced() -> None:
    d = doc(random_weights=True)
    assert RANDOM_WEIGHTS_NOTE in table_text(d)


def test_markdown_report_with_plots(tmp_path: Path) -> None:
    report = write_markdown_report(doc(random_weights=True), tmp_path / "out")
    assert report == tmp_path / "out" / "report.md"
    text = report.read_text()
    assert text.startswith(f"# icpd bench report ({RANDOM_WEIGHTS_NOTE})")
    assert "5shot\\|512" in text  # pipes escaped inside the Markdown table
    assert "## Environment" in text and "test cpu" in text
    assert "| cpu_int8_flags | none |" in text  # an empty list is said, not an empty cell
    assert "### Warnings" in text and "onnxruntime-cpu" in text
    pngs = sorted(p.name for p in report.parent.glob("*.png"))
    assert pngs == ["latency_1shot-256.png", "latency_5shot_512.png", "stages.png"]
    for name in pngs:
        assert f"]({name})" in text  # linked from the report
        assert (report.parent / name).read_bytes()[:8] == PNG_MAGIC


def test_report_without_stages_has_no_breakdown(tmp_path: Path) -> None:
    d = doc(random_weights=False)
    d["results"] = [r for r in d["results"] if r["stage"] == "end_to_end"]
    report = write_markdown_report(d, tmp_path)
    assert not (tmp_path / "stages.png").exists()
    assert "Stage breakdown" not in report.read_text()
    assert RANDOM_WEIGHTS_NOTE not in report.read_text()
