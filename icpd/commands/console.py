"""The two consoles every command prints to, and the one-line error printer.

``out`` (stdout) gets results, ``console`` (stderr) errors, warnings and progress. Its own module
so that the usage-error formatter (:mod:`icpd.commands.usage_errors`) and the shared options
(:mod:`icpd.commands.common`) both print through it without importing each other.
"""

from __future__ import annotations

from rich.console import Console

__all__ = ["console", "out", "print_error"]


class _ResultConsole(Console):
    """stdout console that never wraps lines when stdout is not a terminal (a pipe, a log file,
    a CI capture): machine-read lines such as ``logits max |ORT - torch| = 3.4e-07`` stay whole."""

    @property  # type: ignore[override]
    def soft_wrap(self) -> bool:
        return self._soft_wrap or not self.is_terminal

    @soft_wrap.setter
    def soft_wrap(self, value: bool) -> None:
        self._soft_wrap = value


console = Console(stderr=True)  # errors, warnings and progress
out: Console = _ResultConsole()  # results


def print_error(err: Exception | str) -> None:
    """``error: <err>`` as one line on stderr (every user error, click's usage errors included)."""
    # soft_wrap: paths and key lists stay on one line, copy-pasteable; markup off: messages may hold [..]
    console.print(f"error: {err}", style="red", markup=False, highlight=False, soft_wrap=True)
