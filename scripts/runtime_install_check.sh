#!/usr/bin/env bash
# The runtime-only install, for real: a fresh venv with `pip install -e .` (no extras: the six runtime
# dependencies of pyproject.toml, no torch), then `icpd info`, `cache-support`, `infer`,
# `bench --model` on an exported tiny model, a command that needs torch (must refuse with exit 2),
# and the peak RSS of the ONNX Runtime path (scripts/runtime_rss.py).
#
# usage: scripts/runtime_install_check.sh [WORK_DIR]
#   MODEL_DIR=DIR  use this exported model dir (else the tiny preset is exported, with random
#                  weights, by the full install that runs this script: $PYTHON, default python)
# Needs the package index (pip). Takes about 2 min plus the export (not in .ci/run for that reason).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${1:-}" ]; then mkdir -p "$1"; work=$(cd "$1" && pwd); else work=$(mktemp -d); fi
python=${PYTHON:-python}
start=$SECONDS

"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install -q -e "$repo"
rt="$work/venv/bin"
if "$rt/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)"; then
    echo "ok: the base install has no torch"
else
    echo "FAIL: pip install -e . installed torch"; exit 1
fi

model=${MODEL_DIR:-$work/tiny}
if [ -z "${MODEL_DIR:-}" ]; then
    "$python" -c "
from icpd.export.onnx import export_model
from icpd.model.checkpoint import seeded_model
export_model(seeded_model('tiny', seed=0), '$model', validation_runs=1, force=True)"
fi

cd "$work"
"$rt/python" - <<'EOF'
import cv2
import numpy as np
from icpd.model.text import ClassEmbeddings, save_class_embeddings

rng = np.random.default_rng(0)
cv2.imwrite("s.png", rng.integers(0, 256, (160, 200, 3), np.uint8))
m = np.zeros((160, 200), np.uint8)
m[40:90, 50:120] = 255
cv2.imwrite("m.png", m)
cv2.imwrite("q.png", rng.integers(0, 256, (300, 260, 3), np.uint8))
save_class_embeddings("e.safetensors", ClassEmbeddings(rng.standard_normal((15, 32)).astype(np.float32),
                                                     tuple(f"c{i}" for i in range(15))))
EOF
"$rt/icpd" info | grep -E "torch|backends"
rm -f c3.support
"$rt/icpd" cache-support --model "$model" --class-name c3 --image s.png --mask m.png --class-embeddings e.safetensors \
    --out c3.support -q
"$rt/icpd" infer --model "$model" --support c3.support q.png --out out -q
"$rt/icpd" bench --model "$model" --rounds 0 --iterations 3 --warmup 0 --duration 0 --shots 1 -q
set +e
"$rt/icpd" export --checkpoint best.safetensors --out exported 2> export.err
rc=$?
set -e
if [ "$rc" != 2 ] || ! grep -q "icpd\[torch\]" export.err; then
    echo "FAIL: icpd export without torch: exit $rc, $(cat export.err)"; exit 1
fi
echo "ok: icpd export without torch refuses: $(cat export.err)"
"$rt/python" "$repo/scripts/runtime_rss.py" "$model"
echo "runtime-only install check passed in $((SECONDS - start)) s ($work)"
