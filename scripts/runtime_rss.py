"""Peak memory of the ONNX Runtime path: load a model dir, encode one support set, predict once.

    python scripts/runtime_rss.py MODEL_DIR [MODEL_DIR ...]

Prints one JSON line per model dir (each measured in a fresh subprocess, so the numbers do not
mix): peak RSS (``ru_maxrss``) after ``import``, after ``Predictor.load``, and after one support set
and one prediction, in MiB, plus whether torch was imported. Run it with the interpreter of the
install to measure (a runtime-only venv, or a full one) — README "Set-up" quotes its numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys

_MEASURE = """
import json, resource, sys

def peak():  # Linux: ru_maxrss in KiB
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)

import numpy as np
from icpd.runtime import Predictor, SupportSet  # noqa: F401  (what an application imports)
after_import = peak()
p = Predictor.load(sys.argv[1], backend="ort", threads=1)
after_load = peak()
s = p.preset.image_size
rng = np.random.default_rng(0)
mask = np.zeros((s, s), np.uint8)
mask[s // 4 : s // 2, s // 4 : s // 2] = 1
emb = rng.standard_normal((p.preset.num_classes, p.preset.embed_dim)).astype(np.float32)
p.add_support(p.encode_support([rng.integers(0, 256, (s, s, 3), np.uint8)], [mask], "c0", emb))
p.predict(rng.integers(0, 256, (s, s, 3), np.uint8))
print(json.dumps({"model": p.preset.name, "after_import_mib": after_import, "after_load_mib": after_load,
                  "after_predict_mib": peak(), "torch_imported": "torch" in sys.modules}))
"""


def main(model_dirs: list[str]) -> None:
    if not model_dirs:
        sys.exit(__doc__)
    for d in model_dirs:
        out = subprocess.run([sys.executable, "-c", _MEASURE, d], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            sys.exit(f"{d}: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
        print(json.dumps({"model_dir": d, **json.loads(out.stdout)}))


if __name__ == "__main__":
    main(sys.argv[1:])
