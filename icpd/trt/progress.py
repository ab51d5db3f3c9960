"""The build's progress report: TensorRT's ``IProgressMonitor`` (10.x, 11.x) turned into a few
lines per top-level phase for ``icpd build``."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["progress_monitor"]


def progress_monitor(trt: Any, report: Callable[[str], None]) -> Any | None:
    """An ``IProgressMonitor`` that reports top-level build phases (and their direct children) to
    ``report``; None where this TensorRT has no ``IProgressMonitor``.

    TensorRT calls it from its own threads: the methods take a lock and never raise.
    """
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None

    def say(line: str) -> None:
        with contextlib.suppress(Exception):  # an exception must not cross into TensorRT's C++ thread
            report(line)

    class _Monitor(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self._lock = threading.Lock()
            self._parents: dict[str, str | None] = {}
            self._steps: dict[str, int] = {}
            self._started: dict[str, float] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            with self._lock:
                self._parents[phase_name] = parent_phase
                depth = 0 if parent_phase is None else 1 + (self._parents.get(parent_phase, None) is not None)
                if depth <= 1:
                    self._steps[phase_name] = num_steps
                    self._started[phase_name] = time.perf_counter()
                    say(f"{'  ' * depth}{phase_name} ({num_steps} step{'s' if num_steps != 1 else ''})")

        def step_complete(self, phase_name: str, step: int) -> bool:
            with self._lock:
                n = self._steps.get(phase_name, 0)
                every = max(1, n // 10)  # at most ~10 lines per phase
                if self._parents.get(phase_name, "") is None and n > 1 and (step + 1) % every == 0:
                    say(f"{phase_name}: {step + 1}/{n}")
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            with self._lock:
                t0 = self._started.pop(phase_name, None)
                if t0 is not None and self._parents.get(phase_name, "") is None:
                    say(f"{phase_name}: done in {time.perf_counter() - t0:.1f} s")
                self._parents.pop(phase_name, None)

    return _Monitor()
