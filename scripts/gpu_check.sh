#!/usr/bin/env bash
# GPU check for the rank-prior kernel and the TensorRT path, on a machine with one NVIDIA GPU (< 5 min).
#   1. builds the kernel (nvcc) and runs `pytest -m gpu` (kernel vs reference, CUDA torch op);
#   2. times the CUDA kernel (icpd::ndcg_prior on CUDA) against the vectorised PyTorch CUDA path at
#      paper sizes (CUDA events, warm-up, median of 20);
#   3. when TensorRT is importable: exports the tiny preset in both rank-prior forms, builds FP32
#      and FP16 engines for each and runs `icpd validate --backends torch,ort,trt`.
# Prints numbers; exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${ICPD_GPU_CHECK_DIR:-$(mktemp -d /tmp/icpd-gpu-check.XXXXXX)}"
export ICPD_CACHE_DIR="$WORK/cache"
echo "== environment"; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"

echo "== pytest -m gpu"
python -m pytest -m gpu -q tests/kernels tests/trt -p no:cacheprovider

echo "== kernel vs PyTorch CUDA rank prior (paper sizes)"
python - <<'PY'
import torch
from icpd.kernels.cuda_op import ensure_cuda_op
from icpd.model.rank_prior import distances
from icpd.model.rank_prior import ndcg_prior

op = ensure_cuda_op()
print("kernel library", op.library.name, "cubins", ",".join(op.cubin_archs), "ptx", op.ptx_arch)

def median_ms(fn, reps=20, warmup=5):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]

g = torch.Generator(device="cuda").manual_seed(0)
print(f"{'N x Nq x Ns x C':>22} {'dtype':>8} {'kernel ms':>10} {'torch ms':>10} {'speed-up':>9} {'max |diff|':>11}")
for n, side, c in [(2, 32, 512), (2, 16, 1024), (2, 16, 768), (2, 8, 2048), (10, 32, 512)]:
    nq = ns = side * side
    for dtype in (torch.float32, torch.float16):
        q = torch.randn(n, nq, c, device="cuda", generator=g).to(dtype)
        s = torch.randn(n, ns, c, device="cuda", generator=g).to(dtype)
        r = (torch.rand(n, ns, device="cuda", generator=g) < 0.3).to(dtype)
        kern = lambda: torch.ops.icpd.ndcg_prior(q, s, r)  # noqa: E731
        ref = lambda: ndcg_prior(distances(q, s), r > 0)  # noqa: E731
        tk, tr = median_ms(kern), median_ms(ref)
        diff = (kern() - ref()).abs().max().item()
        print(f"{f'{n}x{nq}x{ns}x{c}':>22} {str(dtype)[6:]:>8} {tk:>10.3f} {tr:>10.3f} {tr / tk:>8.1f}x {diff:>11.2e}")
PY

if python -c "import tensorrt" 2>/dev/null; then
  echo "== TensorRT $(python -c 'import tensorrt; print(tensorrt.__version__)'): tiny preset, both rank-prior forms"
  python - "$WORK" <<'PY'
import sys
from icpd.export.onnx import export_model
from icpd.model.checkpoint import seeded_model
m = seeded_model("tiny", 0)
for form in ("onnx", "plugin"):
    r = export_model(m, f"{sys.argv[1]}/tiny-{form}", rank_prior=form, validation_runs=1, force=True)
    print(f"exported {form} in {r.seconds:.1f} s")
PY
  for form in onnx plugin; do
    for precision in fp32 fp16; do
      python -m icpd.cli build --model "$WORK/tiny-$form" --precision "$precision" --batch 1,2,4 \
        --out "$WORK/engines-$form-$precision" --force
      python -m icpd.cli validate --model "$WORK/tiny-$form" --engines "$WORK/engines-$form-$precision" \
        --backends torch,ort,trt --device cuda --runs 3 --json "$WORK/validate-$form-$precision.json"
    done
  done
else
  echo "== TensorRT not importable here: engine build and validation skipped"
fi
echo "== done ($WORK)"
