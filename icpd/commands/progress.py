"""Progress for long steps: a spinner with the step's name and the elapsed time on a terminal,
a start line and a done line (with seconds) in logs, nothing with ``-q``.

Every step a command runs that can take more than a few seconds goes through :func:`step`, so
a user never waits minutes without a word (``icpd export`` used to print nothing for minutes)::

    with step("exporting ONNX graphs", quiet=quiet):
        ...
    with step("self-check against PyTorch", quiet=quiet) as s:
        s.update("self-check: episode 3/8")
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from icpd.commands.common import console

__all__ = ["Step", "step"]


class Step:
    """A running step: :meth:`update` changes the text next to the spinner (a no-op in logs)."""

    def __init__(self, progress: Progress | None, task: int | None) -> None:
        self._progress, self._task = progress, task

    def update(self, text: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=text)


@contextmanager
def step(name: str, quiet: bool = False) -> Iterator[Step]:
    """Show ``name`` while the block runs (see the module docstring). Errors propagate unchanged;
    in logs the done line is printed only when the block succeeded."""
    if quiet:
        yield Step(None, None)
        return
    if console.is_terminal:
        progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                            console=console, transient=True)
        with progress:
            task = progress.add_task(name, total=None)
            yield Step(progress, task)
        return
    start = time.perf_counter()
    console.print(f"{name} ...", markup=False, highlight=False, soft_wrap=True)
    yield Step(None, None)
    console.print(f"{name}: done in {time.perf_counter() - start:.1f} s", markup=False, highlight=False,
                  soft_wrap=True)
