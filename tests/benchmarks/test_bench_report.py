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
    return make_document(results, environment={"cpu_model": "test cpu", "gpus": None, "env": {"OMP": "2"}},
                         random_weights=random_weights)  # fmt: skip


def table_text(d: dict[str, Any]) -> str:
    console = Console(width=250, record=True)
    console.print(render_summary_table(d))
    return console.export_text()


def test_summary_table_rows_and_high_cv_marker() -> None:
    text = table_text(doc(random_weights=False))
    for header in (
        "scenario",
        "backend",
        "precision",
        "stage",
        "median ms",
        "p90 ms",
        "p99 ms",
        "CV %",
        "items/s",
    ):
        assert header in text
    lines = [line for line in text.splitlines() if "encoder" in line]
    assert len(lines) == 3
    assert "⚠" in next(line for line in lines if "onnxruntime-cpu" in line)  # sigma 0.3: CV ~ 30 %
    assert "⚠" not in next(line for line in lines if "torch-cpu" in line and "fp32" in line)
    assert RANDOM_WEIGHTS_NOTE not in text


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
