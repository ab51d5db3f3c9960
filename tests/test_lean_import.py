"""`import icpd` must stay light: no onnxruntime, no tensorrt, no CUDA initialisation."""

import subprocess
import sys


def test_import_icpd_is_lean():
    code = (
        "import sys, icpd, icpd.config, icpd.model.icpd_net, icpd.cli\n"
        "heavy = [m for m in ('onnxruntime', 'tensorrt', 'onnx', 'matplotlib', 'open_clip') if m in sys.modules]\n"
        "import torch\n"
        "print(heavy, torch.cuda.is_initialized())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[] False", out
