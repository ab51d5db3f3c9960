"""``icpd selftest``: what a user with a GPU runs first, and what a bug report attaches.

One command checks this machine step by step on the tiny preset with seeded weights (nothing is
downloaded) and goes on past failures: the environment (:mod:`.environment`), the rank prior's
CPU reference and CUDA kernel (:mod:`.kernels`), the backends against each other and TensorRT
engines of the ``sort`` and ``plugin`` forms with ``icpd validate``'s pass rule, and each
backend's latency (:mod:`.backends`). The result is one JSON document plus a readable table
(:mod:`.report`); every failed step names the error and the likely fix, and a step that cannot
run here (no GPU, no TensorRT, no nvcc) is reported as skipped with the reason.
"""

from __future__ import annotations

from icpd.selftest.report import SelftestReport, StepResult
from icpd.selftest.run import run_selftest

__all__ = ["SelftestReport", "StepResult", "run_selftest"]
