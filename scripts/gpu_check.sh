#!/usr/bin/env bash
# GPU check for a lent NVIDIA machine (H100/H200 class, 16 cores, no internet, no TensorRT assumed),
# sized to finish within 4 minutes on a fresh machine. Steps, each under its own time limit:
#   1. environment: GPU, driver, CUDA, nvcc, torch, onnxruntime, TensorRT (if any)
#   2. build the rank-prior kernel (nvcc, every arch this nvcc lists) and load it into torch   ~20 s
#   3. pytest -m gpu (kernel vs CPU reference at paper sizes, FP32/FP16, k = 0, k = all, ties) ~60 s
#   4. time the kernel against the vectorised PyTorch CUDA rank prior at paper sizes (ratio)  ~20 s
#   5. ORT CUDA EP vs torch CUDA, encoder + matcher of the tiny export (skipped without the EP) ~90 s
#   6. TensorRT present: icpd build (sort form) + icpd validate; else skipped with a message  ~60 s
# Output: one screen of summary on stdout; everything also in $OUT/gpu_check.json ($OUT if set,
# else ./gpu_check.json). Exit 1 if a step that ran failed; skipped steps do not fail.
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET_S:-230}  # seconds; 4 minutes minus the summary
DEST="${OUT:-.}"; mkdir -p "$DEST"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
export ICPD_CACHE_DIR="$WORK/cache" PYTHONUNBUFFERED=1
LOG="$DEST/gpu_check.log"; : > "$LOG"
declare -A STATUS SECONDS_TAKEN

step() {  # step NAME LIMIT_S COMMAND...: run, record pass/fail/skip (exit 77 = skip) and time
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  local left=$(( BUDGET - (t0 - START) ))  # the whole check stays within BUDGET seconds
  echo "== $name" >> "$LOG"
  if (( left < 10 )); then
    echo "skip: the ${BUDGET} s budget is spent" >> "$LOG"; STATUS[$name]=budget; SECONDS_TAKEN[$name]=0; cat > /dev/null
    return
  fi
  timeout "$(( limit < left ? limit : left ))" "$@" >> "$LOG" 2>&1
  local rc=$?
  SECONDS_TAKEN[$name]=$(( $(date +%s) - t0 ))
  case $rc in 0) STATUS[$name]=pass ;; 77) STATUS[$name]=skip ;; 124) STATUS[$name]=timeout ;; *) STATUS[$name]=fail ;; esac
}

step env 20 python - "$WORK/env.json" <<'PY'
import json, subprocess, sys, importlib.util
def run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception as e:  # noqa: BLE001
        return f"unavailable ({e})"
import torch, onnxruntime
env = {"gpu": run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]),
       "nvcc": run(["nvcc", "--version"]).splitlines()[-1:] , "torch": torch.__version__,
       "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
       "onnxruntime": onnxruntime.__version__, "ort_providers": onnxruntime.get_available_providers(),
       "tensorrt": None}
if importlib.util.find_spec("tensorrt"):
    try:
        import tensorrt
        env["tensorrt"] = tensorrt.__version__
    except Exception as e:  # noqa: BLE001
        env["tensorrt"] = f"not importable: {e}"
json.dump(env, open(sys.argv[1], "w"), indent=1)
print(json.dumps(env, indent=1))
sys.exit(0 if env["cuda_available"] else 1)
PY

step kernel_build 90 python -c "
from icpd.kernels.cuda_op import ensure_cuda_op
op = ensure_cuda_op(); print('built', op)"

step pytest_gpu 120 python -m pytest -q -m gpu -p no:cacheprovider tests/kernels tests/trt tests/benchmarks \
  --junitxml="$WORK/pytest_gpu.xml"

step kernel_vs_torch 60 python - "$WORK/kernel.json" <<'PY'
"""The CUDA kernel vs the vectorised PyTorch CUDA rank prior (topk path) at paper sizes: median ms, ratio."""
import json, sys, torch
from icpd.kernels.cuda_op import ensure_cuda_op
from icpd.model.rank_prior import ndcg_prior, distances
ensure_cuda_op()
def median_ms(fn, reps=30):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); torch.cuda.synchronize(); times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]
res = {}
g = torch.Generator(device="cuda").manual_seed(0)
for name, (n, nq, ns, c) in {"layer2 32x32 C512 5-shot": (5, 1024, 1024, 512), "layer3 16x16 C1024 5-shot": (5, 256, 256, 1024),
                              "clip 16x16 C768 5-shot": (5, 256, 256, 768)}.items():
    q = torch.randn(n, nq, c, device="cuda", generator=g); s = torch.randn(n, ns, c, device="cuda", generator=g)
    r = (torch.rand(n, ns, device="cuda", generator=g) < 0.2).float()
    kernel = median_ms(lambda: torch.ops.icpd.ndcg_prior(q, s, r))
    torch_ = median_ms(lambda: ndcg_prior(distances(q, s), r > 0))
    diff = (torch.ops.icpd.ndcg_prior(q, s, r) - ndcg_prior(distances(q, s), r > 0)).abs().max().item()
    res[name] = {"kernel_ms": kernel, "torch_ms": torch_, "torch_over_kernel": torch_ / kernel, "max_abs_diff": diff}
    print(name, res[name])
json.dump(res, open(sys.argv[1], "w"), indent=1)
PY

step ort_cuda_vs_torch 150 python - "$WORK/ort.json" <<'PY'
"""ONNX Runtime CUDA EP vs torch CUDA on the tiny export: encoder and matcher (topk form), interleaved medians."""
import json, sys, time, statistics, torch, onnxruntime as ort
if "CUDAExecutionProvider" not in ort.get_available_providers():
    print("skip: onnxruntime has no CUDAExecutionProvider here (install onnxruntime-gpu)"); sys.exit(77)
from pathlib import Path
from icpd.model.checkpoint import seeded_model
from icpd.export.onnx import export_model, example_images, example_support_masks, matcher_inputs
from icpd.export.ort_session import ort_session
from icpd.export.wrappers import MatcherGraph, encoder_output_names, matcher_input_names
out = Path(sys.argv[1]).with_name("tiny")
model = seeded_model("tiny", seed=0).eval()
export_model(model, out, validate=False)
p = model.preset
images = example_images(1, p.image_size, 1)
emb = torch.randn(p.num_classes, p.embed_dim)
args = matcher_inputs(model, images, example_images(5, p.image_size, 2), example_support_masks(5, p.image_size, 3), emb)
names = matcher_input_names(p, p.fusion_weight > 0)
enc, mat = ort_session(out / "encoder.onnx", device="cuda"), ort_session(out / "matcher.onnx", device="cuda")
cuda = model.cuda()
matcher = MatcherGraph(cuda, all_outputs=True, rank="topk")
img_cuda, args_cuda = images.cuda(), [a.cuda() for a in args]
feeds = {n: a.numpy() for n, a in zip(names, args)}
runs = {"encoder ort": lambda: enc.run(None, {"images": images.numpy()}),
        "encoder torch": lambda: cuda.encode_unchecked(img_cuda),
        "matcher ort": lambda: mat.run(None, feeds), "matcher torch": lambda: matcher(*args_cuda)}
times = {k: [] for k in runs}
with torch.no_grad():
    for r in range(12):
        for k in (runs if r % 2 == 0 else list(runs)[::-1]):
            t = time.perf_counter(); runs[k](); torch.cuda.synchronize(); times[k].append(time.perf_counter() - t)
res = {k: statistics.median(v[2:]) * 1e3 for k, v in times.items()}
res["encoder torch/ort"] = res["encoder torch"] / res["encoder ort"]
res["matcher torch/ort"] = res["matcher torch"] / res["matcher ort"]
print(res); json.dump(res, open(sys.argv[1], "w"), indent=1)
PY

step tensorrt_build_validate 150 bash -c '
python -c "import tensorrt" 2>/dev/null || { echo "skip: TensorRT is not installed on this machine"; exit 77; }
python -c "from icpd.model.checkpoint import seeded_model; from icpd.export.onnx import export_model; export_model(seeded_model(\"tiny\", seed=0), \"'"$WORK"'/sort\", rank_prior=\"sort\", validate=False)" &&
python -m icpd.cli check-trt "'"$WORK"'/sort" &&
python -m icpd.cli build --model "'"$WORK"'/sort" --out "'"$WORK"'/engines" --precision fp16 &&
python -m icpd.cli validate --model "'"$WORK"'/sort" --engines "'"$WORK"'/engines" --backends torch,trt --runs 2 --json "'"$WORK"'/validate.json"'

python - "$WORK" "$DEST/gpu_check.json" "$(( $(date +%s) - START ))" \
  "$(for k in "${!STATUS[@]}"; do echo "$k=${STATUS[$k]}:${SECONDS_TAKEN[$k]}"; done)" <<'PY'
import json, sys
from pathlib import Path
work, dest, total, steps = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4].split()
summary = {"total_seconds": total, "steps": {}}
for item in steps:
    name, rest = item.split("=", 1); status, secs = rest.split(":")
    summary["steps"][name] = {"status": status, "seconds": int(secs)}
for key, name in (("env", "env.json"), ("kernel_vs_torch", "kernel.json"), ("ort_cuda_vs_torch", "ort.json"),
                  ("validate", "validate.json")):
    if (work / name).is_file():
        summary[key] = json.loads((work / name).read_text())
Path(dest).write_text(json.dumps(summary, indent=1))
env = summary.get("env", {})
print(f"GPU check: {env.get('gpu', '?')} | torch {env.get('torch')} (CUDA {env.get('torch_cuda')}) | "
      f"onnxruntime {env.get('onnxruntime')} | TensorRT {env.get('tensorrt') or 'absent'} | {total} s")
order = ["env", "kernel_build", "pytest_gpu", "kernel_vs_torch", "ort_cuda_vs_torch", "tensorrt_build_validate"]
for name in order:
    s = summary["steps"].get(name, {"status": "not run", "seconds": 0})
    print(f"  {name:<24} {s['status']:<8} {s['seconds']:>4} s")
for case, r in summary.get("kernel_vs_torch", {}).items():
    print(f"  kernel {case:<28} {r['kernel_ms']:.3f} ms, torch {r['torch_ms']:.3f} ms: {r['torch_over_kernel']:.1f}x, "
          f"max |diff| {r['max_abs_diff']:.1e}")
if "ort_cuda_vs_torch" in summary:
    print(f"  ORT CUDA vs torch CUDA: {summary['ort_cuda_vs_torch']}")
print(f"  details: {dest} and the log beside it")
sys.exit(1 if any(s["status"] in ("fail", "timeout") for s in summary["steps"].values()) else 0)
PY
