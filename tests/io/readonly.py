"""A folder nobody can write into, also for root (tests run as root in some containers, where
``chmod 0555`` stops nobody): ``chattr +i`` when running as root, ``chmod 0555`` otherwise.
Other test modules import :func:`read_only_dir` from here."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def read_only_dir(path: Path) -> Iterator[Path]:
    """Make the existing folder ``path`` unwritable for the body; skip the test where that is impossible."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(mode)
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: cannot make a folder read-only")
    proc = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"running as root and chattr +i failed ({proc.stderr.strip()}): cannot make a folder read-only")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
