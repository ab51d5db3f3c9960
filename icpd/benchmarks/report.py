"""Human-facing views of a bench document: a rich terminal table and a Markdown report with plots.

matplotlib is imported inside :func:`write_markdown_report` (Agg backend), so importing this
module stays light.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icpd.benchmarks.stats import Summary, high_variance
from icpd.benchmarks.timer import END_TO_END
from icpd.io.atomic import write_text_atomic

if TYPE_CHECKING:
    from rich.table import Table

__all__ = ["RANDOM_WEIGHTS_NOTE", "render_summary_table", "write_markdown_report"]

RANDOM_WEIGHTS_NOTE = "random weights: latency only"
CV_THRESHOLD = 0.10  # same default as stats.high_variance
# The full table (report.md; the JSON holds the same fields and the samples)
_COLUMNS = (
    "scenario", "backend", "precision", "stage", "batch", "shots", "classes",
    "median ms", "p90 ms", "p99 ms", "mean ms", "std ms", "CV %", "items/s", "",
)  # fmt: skip
# The terminal table: one row per configuration, fits an 80-column terminal
_COMPACT_COLUMNS = ("scenario", "shots", "classes", "batch", "backend", "e2e ms", "p90", "encoder", "matcher", "CV %")
_COMPACT_STAGES = ("encoder", "matcher")  # stage medians shown beside the end-to-end latency


def _backend_label(result: Mapping[str, Any]) -> str:
    variant = result.get("variant")
    return f"{result['backend']} [{variant}]" if variant else str(result["backend"])


def _rows(doc: Mapping[str, Any]) -> list[list[str]]:
    """One row of :data:`_COLUMNS` cells per result; the last cell marks high variance."""
    rows = []
    for r in doc["results"]:
        s = Summary.from_dict(r["summary"])
        rows.append([
            str(r["scenario"]), _backend_label(r), str(r["precision"]), str(r["stage"]), str(r["batch"]),
            str(r["shots"]), str(r["classes"]),
            f"{s.median:.3f}", f"{s.p90:.3f}", f"{s.p99:.3f}", f"{s.mean:.3f}", f"{s.std:.3f}",
            f"{s.cv * 100:.1f}", f"{s.throughput:.1f}",
            "⚠ high CV" if high_variance(s, CV_THRESHOLD) else "",
        ])  # fmt: skip
    return rows


def _ms(value: float) -> str:
    """Milliseconds in at most 6 characters with 3-4 significant digits (0.123, 12.35, 1234)."""
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def _compact_rows(doc: Mapping[str, Any]) -> list[tuple[list[str], bool]]:
    """One row of :data:`_COMPACT_COLUMNS` per configuration (scenario, backend, precision, batch,
    shots, classes, variant) in first-seen order, with whether its end-to-end CV is high."""
    configs: dict[tuple[Any, ...], dict[str, Mapping[str, Any]]] = {}
    for r in doc["results"]:
        key = (r["scenario"], r["backend"], r["precision"], r["batch"], r["shots"], r["classes"], r.get("variant"))
        configs.setdefault(key, {})[r["stage"]] = r
    mixed_precision = len({r["precision"] for r in doc["results"]}) > 1
    rows = []
    for (scenario, _, precision, batch, shots, classes, _), stages in configs.items():
        first = next(iter(stages.values()))
        backend = _backend_label(first) + (f" {precision}" if mixed_precision else "")
        e2e = stages.get(END_TO_END)
        s = Summary.from_dict(e2e["summary"]) if e2e is not None else None
        medians = [_ms(float(stages[st]["summary"]["median"])) if st in stages else "-" for st in _COMPACT_STAGES]
        noisy = s is not None and bool(high_variance(s, CV_THRESHOLD))
        cells = [str(scenario), str(shots), str(classes), str(batch), backend,
                 _ms(s.median) if s else "-", _ms(s.p90) if s else "-", *medians,
                 f"{s.cv * 100:.1f}" + (" ⚠" if noisy else "") if s else "-"]
        rows.append((cells, noisy))
    return rows


def _title(doc: Mapping[str, Any], base: str, sep: str = " ") -> str:
    return f"{base}{sep}({RANDOM_WEIGHTS_NOTE})" if doc.get("random_weights") else base


def render_summary_table(doc: Mapping[str, Any]) -> Table:
    """A compact rich table, one row per configuration, that fits an 80-column terminal:
    scenario, shots, classes, batch, backend, end-to-end median and p90, the encoder and matcher
    stage medians (ms), and the end-to-end coefficient of variation (⚠ when high). The full
    table (every stage, p99, mean, std, throughput) is in report.md and the JSON."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=_title(doc, "icpd bench"), box=box.SIMPLE_HEAD, padding=(0, 0), show_edge=False,
        caption=f"ms. e2e: end-to-end median, p90 of it; encoder, matcher: stage medians; ⚠: CV above "
                f"{CV_THRESHOLD:.0%}, numbers may be unreliable. Every stage: --report, --json.",
    )
    for i, name in enumerate(_COMPACT_COLUMNS):
        table.add_column(name, justify="left" if i in (0, 4) else "right", no_wrap=True)
    for cells, noisy in _compact_rows(doc):
        *rest, cv = cells
        table.add_row(*(Text(c) for c in rest), Text(cv, style="yellow" if noisy else ""))
    return table


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str] | tuple[str, ...], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "scenario"


def _config_label(result: Mapping[str, Any]) -> str:
    return (
        f"{_backend_label(result)}\n{result['precision']} "
        f"b{result['batch']} s{result['shots']} c{result['classes']}"
    )


def _plot_distributions(doc: Mapping[str, Any], out_dir: Path, plt: Any) -> list[tuple[str, Path]]:
    """One box plot per scenario of end-to-end latencies (all stages if it has no end-to-end)."""
    by_scenario: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in doc["results"]:
        by_scenario[r["scenario"]].append(r)
    written = []
    for scenario, results in by_scenario.items():
        e2e = [r for r in results if r["stage"] == END_TO_END]
        shown = e2e or results
        labels = [_config_label(r) + ("" if e2e else f"\n{r['stage']}") for r in shown]
        fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(shown) + 1.5), 4.0))
        ax.boxplot([r["samples"] for r in shown], showfliers=True)
        ax.set_xticks(range(1, len(shown) + 1), labels, fontsize=7)
        ax.set_ylabel("latency (ms)")
        ax.set_title(
            _title(doc, f"{scenario}: {'end-to-end' if e2e else 'per-stage'} latency", "\n"), fontsize=9
        )
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"latency_{_slug(scenario)}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append((scenario, path))
    return written


def _plot_stages(doc: Mapping[str, Any], out_dir: Path, plt: Any) -> Path | None:
    """Stacked bars of stage medians per configuration; a dot marks the end-to-end median."""
    groups: dict[tuple[Any, ...], dict[str, float]] = defaultdict(dict)
    labels: dict[tuple[Any, ...], str] = {}
    for r in doc["results"]:
        key = (
            r["scenario"],
            r["backend"],
            r["precision"],
            r["batch"],
            r["shots"],
            r["classes"],
            r.get("variant"),
        )
        groups[key][r["stage"]] = float(r["summary"]["median"])
        labels[key] = f"{r['scenario']}\n{_config_label(r)}"
    groups = {k: v for k, v in groups.items() if set(v) - {END_TO_END}}
    if not groups:
        return None
    stages = list(dict.fromkeys(s for v in groups.values() for s in v if s != END_TO_END))
    keys = list(groups)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(keys) + 2.5), 4.5))
    bottoms = [0.0] * len(keys)
    for stage in stages:
        heights = [groups[k].get(stage, 0.0) for k in keys]
        ax.bar(range(len(keys)), heights, bottom=bottoms, label=stage)
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    e2e = [(i, groups[k][END_TO_END]) for i, k in enumerate(keys) if END_TO_END in groups[k]]
    if e2e:
        ax.plot([i for i, _ in e2e], [m for _, m in e2e], "ko", label="end-to-end median")
    ax.set_xticks(range(len(keys)), [labels[k] for k in keys], fontsize=7)
    ax.set_ylabel("median latency (ms)")
    ax.set_title(_title(doc, "stage breakdown (medians)", "\n"), fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    path = out_dir / "stages.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _environment_rows(env: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for name, value in env.items():
        if isinstance(value, Mapping):
            value = ", ".join(f"{k}={v}" for k, v in value.items() if v is not None) or "none"
        elif isinstance(value, list):
            value = "; ".join(str(v) for v in value) or "none"  # e.g. cpu_int8_flags of a CPU with none of them
        rows.append([name, "unknown" if value is None else str(value)])
    return rows


def write_markdown_report(doc: Mapping[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """Write ``report.md`` and its PNG plots into ``out_dir``; return the path of ``report.md``.

    Plots: ``latency_<scenario>.png`` (box plots of end-to-end latency per backend) and, when
    stages were timed, ``stages.png`` (stacked stage medians).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)  # headless: CI runners have no display
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    distributions = _plot_distributions(doc, out, plt)
    stages_png = _plot_stages(doc, out, plt)

    lines = [f"# {_title(doc, 'icpd bench report')}", ""]
    if doc.get("random_weights"):
        lines += [
            (
                f"> **{RANDOM_WEIGHTS_NOTE}.** The model had random weights: these numbers describe "
                "speed and memory only, not segmentation quality."
            ),
            "",
        ]
    meta = [f"{k}: {doc[k]}" for k in ("created_utc", "icpd_version") if k in doc]
    lines += [f"schema_version {doc['schema_version']}" + "".join(f", {m}" for m in meta), ""]
    lines += ["## Environment", ""] + _md_table(["field", "value"], _environment_rows(doc["environment"]))
    rows = _rows(doc)
    lines += ["", "## Results", "", "Latencies in ms; throughput in items/s at the median.", ""]
    lines += _md_table(list(_COLUMNS[:-1]) + ["note"], rows)
    warnings = [
        f"- {r['scenario']} / {_backend_label(r)} / {r['precision']} / {r['stage']}: {w}"
        for r in doc["results"]
        if (w := high_variance(Summary.from_dict(r["summary"]), CV_THRESHOLD))
    ]
    if warnings:
        lines += ["", "### Warnings", ""] + warnings
    lines += ["", "## Latency distributions", ""]
    for scenario, path in distributions:
        lines += [f"![{scenario} latency]({path.name})", ""]
    if stages_png is not None:
        lines += ["## Stage breakdown", "", f"![stage breakdown]({stages_png.name})", ""]
    report = out / "report.md"
    write_text_atomic(report, "\n".join(lines).rstrip() + "\n")
    return report
