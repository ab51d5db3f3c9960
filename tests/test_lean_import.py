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


def test_runtime_modules_import_no_torch():
    """The ONNX Runtime path (Predictor, its backend, support caches, class embeddings, `icpd infer`'s
    library) imports neither torch nor the exporter: a runtime-only install has neither (issue 12)."""
    code = (
        "import sys\n"
        "import icpd.runtime.predictor, icpd.runtime.backends.ort, icpd.runtime.backends.trt, icpd.apps.infer.local\n"
        "import icpd.runtime.support_encoding, icpd.model.text, icpd.artifacts.signature, icpd.model, icpd.kernels\n"
        "from icpd.runtime import Predictor, SupportSet\n"
        "print([m for m in ('torch', 'torchvision', 'open_clip', 'onnx', 'onnxscript', 'scipy') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out


def test_from_icpd_import_predictor_without_torch():
    """`from icpd import Predictor` (the entry point, as `from segment_anything import SamPredictor`)
    works and imports no torch; `import icpd` alone imports not even numpy's users of the runtime."""
    code = (
        "import sys, icpd\n"
        "light = 'icpd.runtime.predictor' not in sys.modules\n"
        "from icpd import Predictor, Prediction, SupportSet, read_image, read_mask\n"
        "from icpd.runtime.predictor import Predictor as P\n"
        "print(light, Predictor is P, [m for m in ('torch', 'onnxruntime') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "True True []", out
