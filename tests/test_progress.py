"""Issue 12, section 5: long steps say what they do (a spinner on a terminal, start and done
lines in logs, nothing with -q). An export's step lines: tests/export/test_fp16.py."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from icpd.commands import progress


def _console(monkeypatch, terminal: bool) -> io.StringIO:
    buf = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=buf, force_terminal=terminal, width=100))
    return buf


def test_in_logs_a_step_prints_a_start_and_a_done_line_with_seconds(monkeypatch):
    buf = _console(monkeypatch, terminal=False)
    with progress.step("exporting ONNX graphs") as s:
        s.update("ignored in logs")
    lines = buf.getvalue().splitlines()
    assert lines[0] == "exporting ONNX graphs ..."
    assert re.fullmatch(r"exporting ONNX graphs: done in \d+\.\d s", lines[1]), lines


def test_a_failed_step_has_no_done_line_and_the_error_propagates(monkeypatch):
    buf = _console(monkeypatch, terminal=False)
    with pytest.raises(RuntimeError, match="boom"), progress.step("self-check"):
        raise RuntimeError("boom")
    assert "done" not in buf.getvalue() and "self-check ..." in buf.getvalue()


def test_quiet_prints_nothing(monkeypatch):
    buf = _console(monkeypatch, terminal=False)
    with progress.step("quantizing", quiet=True) as s:
        s.update("anything")
    assert buf.getvalue() == ""


def test_on_a_terminal_a_spinner_shows_the_name_and_the_elapsed_time(monkeypatch):
    buf = _console(monkeypatch, terminal=True)
    with progress.step("loading model") as s:
        s.update("loading model: 2 of 4 files")
    out = buf.getvalue()
    assert "loading model: 2 of 4 files" in out and re.search(r"0:00:0\d", out), out  # rich's elapsed column

