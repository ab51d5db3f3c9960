"""What a refused ``icpd`` command printed, for the tests of its one ``error:`` line."""

from __future__ import annotations

from click.testing import Result


def error_line(res: Result) -> str:
    """The one ``error:`` line a refused command printed (exit 2, no traceback), joined into one line
    in case the terminal wrapped it."""
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output, res.output
    return " ".join(res.output.split())
