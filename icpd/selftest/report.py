"""The self-test's result: one record per step, written as JSON after every step, and a table.

``selftest.json`` (format ``icpd-selftest`` v1)::

    {"format", "format_version", "icpd_version", "device", "started_utc", "seconds", "passed",
     "counts": {"pass", "fail", "skip"},
     "steps": [{"name", "title", "status": "pass" | "fail" | "skip", "seconds",
                "details": {...}, "error", "fix", "reason"}]}

A run cut short still leaves the steps it finished (the file is replaced atomically each time).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from icpd.io.atomic import write_text_atomic

FORMAT = "icpd-selftest"
FORMAT_VERSION = 1
STATUSES = ("pass", "fail", "skip")


class Skip(Exception):  # a signal that the step cannot run here, not an error
    """Raised by a step that cannot run here; the message is the reason."""


@dataclass
class StepResult:
    name: str  # e.g. "kernel_cuda"
    title: str  # one line: what the step checks
    status: str = "skip"  # pass | fail | skip
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)  # measured values, versions, per-case results
    error: str = ""  # fail: "ExceptionType: message"
    fix: str = ""  # fail: the likely fix
    reason: str = ""  # skip: why the step did not run


@dataclass
class SelftestReport:
    device: str  # the device asked for (cpu, cuda, cuda:N)
    icpd_version: str
    started_utc: str
    steps: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not any(s.status == "fail" for s in self.steps)

    def step(self, name: str) -> StepResult | None:
        return next((s for s in self.steps if s.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        counts = {k: sum(s.status == k for s in self.steps) for k in STATUSES}
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "icpd_version": self.icpd_version,
                "device": self.device, "started_utc": self.started_utc, "seconds": round(self.seconds, 2),
                "passed": self.passed, "counts": counts, "steps": [asdict(s) for s in self.steps]}

    def write(self, path: str | os.PathLike[str]) -> Path:
        return write_text_atomic(Path(path), json.dumps(self.as_dict(), indent=1, default=str) + "\n")


def _summary(step: StepResult) -> str:
    """The table's last column: the key numbers of a passed step, the reason of a skipped one."""
    if step.status == "skip":
        return step.reason
    if step.status == "fail":
        return step.error.splitlines()[0] if step.error else ""
    return str(step.details.get("summary", ""))


def format_table(report: SelftestReport, width: int = 110) -> str:
    """A fixed-width table (step, status, seconds, summary), then each failure's error and fix in full."""
    lines = [(f"icpd selftest {report.icpd_version} on {report.device}: "
             f"{'PASS' if report.passed else 'FAIL'} in {report.seconds:.1f} s"),
             f"{'step':<20} {'status':<6} {'time':>7}  note"]
    for s in report.steps:
        note = _summary(s)
        room = max(20, width - 37)
        shown = note[:room] + ("..." if len(note) > room else "")
        lines.append(f"{s.name:<20} {s.status.upper():<6} {s.seconds:>6.1f}s  {shown}")
    for s in report.steps:
        if s.status == "fail":
            lines += ["", f"FAILED {s.name} ({s.title})", f"  error: {s.error}", f"  likely fix: {s.fix}"]
    return "\n".join(lines)
