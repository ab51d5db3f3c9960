"""Importing the benchmark modules must not pull in heavy or optional libraries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import icpd

HEAVY = ("torch", "matplotlib", "onnxruntime", "tensorrt", "scipy", "open_clip")


def test_benchmark_modules_import_lean() -> None:
    # The package is registered without running icpd/__init__.py, so this checks what the
    # benchmark modules themselves import, whatever the rest of the package does.
    package_dir = str(Path(icpd.__file__).parent)
    code = (
        "import sys, types\n"
        f"pkg = types.ModuleType('icpd'); pkg.__path__ = [{package_dir!r}]; sys.modules['icpd'] = pkg\n"
        "import icpd.benchmarks.stats, icpd.benchmarks.timer, icpd.benchmarks.schema\n"
        "import icpd.benchmarks.env, icpd.benchmarks.compare, icpd.benchmarks.report\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
