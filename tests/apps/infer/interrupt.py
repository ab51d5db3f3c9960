"""Stopping a real `icpd infer` process by a signal once some scenes are complete: the one helper of
the SIGTERM (exit 143) and Ctrl-C (exit 130) tests."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

# the console script as a user runs it, through this interpreter (no installed `icpd` needed on PATH)
ICPD = "import sys; from icpd.cli import main; sys.argv = ['icpd', *sys.argv[1:]]; main()"


def icpd_command(*args: str) -> list[str]:
    """The argv of ``icpd ARGS...`` in a subprocess of this Python."""
    return [sys.executable, "-c", ICPD, *args]


def recorded(out: Path) -> int:
    """Scenes the run's manifest (``out/runs/*.jsonl``, a line per complete scene) holds as complete."""
    if not (out / "runs").is_dir():
        return 0
    return sum(len(f.read_text().splitlines()) for f in (out / "runs").glob("*.jsonl"))


def signal_after(argv: list[str], out: Path, scenes: int, sig: signal.Signals,
                 timeout_s: float = 120) -> tuple[int, str]:
    """Run ``argv``, send ``sig`` once ``scenes`` scenes are complete in ``out``, and return the exit
    code and stderr. Fails the test if the process ends first or nothing is complete in ``timeout_s``;
    a failed wait leaves no icpd process writing into the test's folder."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout_s
        while recorded(out) < scenes:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"no scene was complete within {timeout_s:.0f} s"
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err
