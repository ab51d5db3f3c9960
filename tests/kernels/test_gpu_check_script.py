"""scripts/gpu_check.py, the Python half of scripts/gpu_check.sh: the per-step record (JSON and JUnit XML
rewritten after every step, so a run cut short returns what it did) and the `ptxas -v` parser."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.py"

# what nvcc 13.0 -Xptxas -v prints for ndcg_prior.cu (sm_90), trimmed
PTXAS_LOG = """ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'icpd_ndcg_prior_kernel_f16' for 'sm_90'
ptxas info    : Function properties for icpd_ndcg_prior_kernel_f16
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 32 registers, used 1 barriers
ptxas info    : Compiling entry function 'icpd_ndcg_prior_kernel_f32' for 'sm_87'
ptxas info    : Function properties for icpd_ndcg_prior_kernel_f32
    8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 40 registers, 16 bytes smem, 380 bytes cmem[0]
"""


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL, timeout=120)


def test_record_rewrites_json_and_junit_after_each_step(tmp_path):
    summary = tmp_path / "gpu_check.json"
    details = tmp_path / "d.json"
    details.write_text(json.dumps({"kernel_ms": 0.5}))
    assert run("record", str(summary), "kernel_time", "pass", "12", str(details)).returncode == 0
    reason = tmp_path / "r.txt"
    reason.write_text("skip: --rehearse (no GPU)\n")
    assert run("record", str(summary), "sanitize_memcheck_300", "skip", "0", str(reason)).returncode == 0
    assert run("record", str(summary), "torch_paper", "timeout", "120").returncode == 0
    doc = json.loads(summary.read_text())
    assert doc["steps"]["kernel_time"] == {"status": "pass", "seconds": 12, "details": {"kernel_ms": 0.5}}
    assert doc["steps"]["sanitize_memcheck_300"]["details"] == "skip: --rehearse (no GPU)\n"
    assert doc["failed"] == ["torch_paper"]
    suite = ET.parse(tmp_path / "gpu_check.junit.xml").getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = {c.get("name"): c for c in suite}
    assert cases["torch_paper"].find("failure") is not None
    assert cases["sanitize_memcheck_300"].find("skipped") is not None


def test_ptxas_registers_spills_and_shared_memory_per_arch(tmp_path):
    log = tmp_path / "ptxas.log"
    log.write_text(PTXAS_LOG)
    res = run("ptxas", str(log), str(tmp_path / "out.json"))
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["sm_90"] == {"f16": {"stack": 0, "spill_stores": 0, "spill_loads": 0, "registers": 32, "static_smem": 0}}
    assert doc["sm_87"]["f32"] == {"stack": 8, "spill_stores": 4, "spill_loads": 4, "registers": 40, "static_smem": 16}
    # the dynamic shared memory per block at paper sizes (icpd.kernels.launch.shared_bytes): <= 10.5 KB
    assert doc["dynamic_smem_bytes"]["layer2 32x32 C512"] == 10496
    assert max(v for k, v in doc["dynamic_smem_bytes"].items() if not k.startswith("max")) <= 10.5 * 1024


def test_ptxas_without_register_lines_fails(tmp_path):
    log = tmp_path / "ptxas.log"
    log.write_text("nvcc fatal   : Unsupported gpu architecture 'compute_999'\n")
    res = run("ptxas", str(log), str(tmp_path / "out.json"))
    assert res.returncode == 1 and "ptxas -v printed no register counts" in res.stderr
