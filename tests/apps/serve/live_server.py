"""A real ``icpd serve`` (or ``icpd serve --ray``) subprocess on a free loopback port, for the tests
that need a server the way a user starts it (the page in Chromium, the load test, Ray Serve)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

ICPD = [sys.executable, "-c", "import sys; from icpd.cli import main; sys.argv[0] = 'icpd'; main()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def support_args(paths: Sequence[Path]) -> list[str]:
    """``--support P`` for each path."""
    return [arg for p in paths for arg in ("--support", str(p))]


class LiveServer:
    """``icpd serve ARGS --host 127.0.0.1 --port FREE``; ``url``; ``stop()`` sends SIGTERM and returns the exit code."""

    def __init__(self, args: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        environ = {k: v for k, v in os.environ.items() if k != "ICPD_SERVE_TOKEN"}
        environ.update(env or {})
        self.proc = subprocess.Popen([*ICPD, "serve", *args, "--host", "127.0.0.1", "--port", str(self.port)],
                                     stdout=log.open("wb"), stderr=subprocess.STDOUT, env=environ,
                                     start_new_session=True)  # its own group: Ray's processes go with it

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until ``/readyz`` answers 200 (AssertionError with the server's output if it exits or times out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"icpd serve exited with {self.proc.returncode}:\n{self.output()[-3000:]}"
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"icpd serve not ready within {timeout:.0f} s:\n{self.output()[-3000:]}")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then the exit code (the whole process group is killed if it does not stop in time)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise AssertionError(f"icpd serve ignored SIGTERM for {timeout:.0f} s:\n"
                                     f"{self.output()[-3000:]}") from None
        return self.proc.returncode
