"""`icpd selftest`: check this machine step by step (see :mod:`icpd.selftest`); exit 1 on any failure."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from icpd.commands.common import QuietOpt

if TYPE_CHECKING:
    from icpd.selftest.report import StepResult


def register(app: typer.Typer) -> None:
    from icpd.commands.common import console, fail, out

    @app.command("selftest")
    def selftest_cmd(
        device: Annotated[str, typer.Option(help="auto (cuda when torch sees a GPU), cpu, cuda or cuda:N.")] = "auto",
        out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for selftest.json and selftest.txt.")] =
            Path("icpd-selftest"),
        plugin_library: Annotated[Path | None, typer.Option(
            help="C++ NdcgPrior plugin (.so) for the plugin-form engines (TensorRT < 10.9).")] = None,
        only: Annotated[str, typer.Option(help="Comma-separated step names to run (default: all).")] = "",
        cache: Annotated[bool, typer.Option(help="Reuse the tiny model exported by an earlier run (same sources and "
                                                  "versions) from icpd's cache.")] = True,
        quiet: QuietOpt = False,
    ) -> None:
        """Check this machine: environment, rank-prior kernel, backends and TensorRT engines vs references, latency.

        The first thing to run on a GPU (about two minutes; tiny preset, seeded weights, nothing to
        download). Goes on past failures; steps that cannot run here are skipped with the reason.
        Writes OUT/selftest.json (attach it to bug reports) and OUT/selftest.txt; exit 1 if a step failed."""
        from icpd.io import OutputPathError
        from icpd.io.atomic import write_text_atomic
        from icpd.io.outputs import claim_output
        from icpd.selftest.report import format_table
        from icpd.selftest.run import REPORT_NAME, TABLE_NAME, run_selftest

        def progress(step: StepResult) -> None:
            if not quiet:
                note = step.reason if step.status == "skip" else step.error if step.status == "fail" else ""
                console.print(f"selftest: {step.name} {step.status} "
                              f"({step.seconds:.1f} s){': ' + note if note else ''}",
                              markup=False, highlight=False, soft_wrap=True)

        names = tuple(n.strip() for n in only.split(",") if n.strip())
        try:  # --out claimed first: writable, and no other selftest writing it (refused at once, with its pid)
            with claim_output(out_dir, "selftest", folder=True):
                report = run_selftest(device, out_dir, plugin_library=plugin_library, progress=progress, only=names,
                                      cache=cache)
                table = format_table(report)
                write_text_atomic(out_dir / TABLE_NAME, table + "\n")
        except (ValueError, OutputPathError) as e:
            fail(e)
        if not quiet or not report.passed:
            out.print(table, markup=False, highlight=False, soft_wrap=True)
        if not quiet:
            out.print(f"wrote {out_dir / REPORT_NAME} (attach it to bug reports) and {out_dir / TABLE_NAME}")
        if not report.passed:
            raise typer.Exit(code=1)
