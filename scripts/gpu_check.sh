#!/usr/bin/env bash
# shellcheck disable=SC2317  # need_gpu, need_nvcc and install run indirectly (step, bash -c)
# GPU check for the lent NVIDIA machine (one H100/H200, 16 cores, Python 3.12 `python3` at /opt/torch/.venv
# with torch 2.11+cu130, nvcc 13.0, onnxruntime (CPU), compute-sanitizer; no TensorRT, no package registry).
#
#   bash scripts/gpu_check.sh [--rehearse] [--no-werror]
#
# Before: bash scripts/fetch_gpu_wheels.sh fills .gpu-wheels/ (git-ignored; what the image lacks) and the
# device call carries it (`carry: [".gpu-wheels"]`). Steps, each under its own time limit, the whole
# within GPU_CHECK_BUDGET_S (default 225 s: finishes in under 4 minutes):
#   install        pip install --no-deps --no-index: the carried wheels, then the project (editable)
#   env            nvidia-smi, nvcc, compute-sanitizer, ncu; which carried packages are in use
#   kernel_build   the rank-prior kernel, built once into $ICPD_CACHE_DIR (every later step reuses it)
#   sanitize_*     compute-sanitizer memcheck, racecheck, synccheck, initcheck on the kernel at Ns = 300, 4096
#   kernel_time    kernel vs the PyTorch top-k rank prior at paper sizes
#   selftest       icpd selftest --device cuda -> $OUT/selftest/selftest.json
#   torch_paper    torch on CUDA, paper preset (seeded): FP32, FP16 autocast (rank prior FP32), CUDA graphs vs CPU
#   pytest_gpu     pytest -m gpu (kernel vs CPU reference, TensorRT where present) -> $OUT/pytest_gpu.xml
#   ptxas          `ptxas -v` registers / spills / shared memory per arch; the pinned PTX into $OUT (no GPU needed)
# Results are written as each step ends: $OUT/gpu_check.json (+ .junit.xml), $OUT/gpu_check.log,
# $OUT/selftest/, $OUT/ndcg_prior.ptx; a run cut short still returns what it did. Exit 1 if a step
# that ran failed; skipped steps do not fail. No step reads standard input.
#
# --rehearse: the same script on a machine without a GPU (CI): a fresh venv (--system-site-packages:
# the image's preinstalled stack stands in for /opt/torch/.venv's; the carried wheels and the project
# go into the venv with --no-index and must be the copies in use), selftest on --device cpu; only the
# steps that need a GPU are skipped. --no-werror: build the kernel without -Werror (ICPD_NVCC_WERROR=0),
# for a host compiler that warns inside CUDA's headers.
set -uo pipefail
exec </dev/null  # nothing may wait on standard input
cd "$(dirname "$0")/.." || exit 2
REHEARSE=0
for arg in "$@"; do
  case $arg in
    --rehearse) REHEARSE=1 ;;
    --no-werror) export ICPD_NVCC_WERROR=0 ;;
    *) echo "usage: $0 [--rehearse] [--no-werror]" >&2; exit 2 ;;
  esac
done
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET_S:-$( (( REHEARSE )) && echo 900 || echo 225 )}  # the device's window is 4 minutes; CI's is not
WHEELS=${GPU_WHEELS:-.gpu-wheels}
DEST="${OUT:-$PWD/gpu-check-out}"; mkdir -p "$DEST"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
export ICPD_CACHE_DIR="${ICPD_CACHE_DIR:-$WORK/cache}" PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # icpd from this checkout even if its install step failed
LOG="$DEST/gpu_check.log"; : > "$LOG"
SUMMARY="$DEST/gpu_check.json"; rm -f "$SUMMARY"
PY=python3
# the packages the device image lacks: each must come from a carried wheel (see fetch_gpu_wheels.sh)
CARRIED_MODULES="open_clip ftfy wcwidth onnxconverter_common"
FAILED=0

step() {  # step NAME LIMIT_S COMMAND...: run it, log it, record pass/fail/skip (exit 77)/timeout
  local name=$1 limit=$2; shift 2
  local t0; t0=$(date +%s)
  local left=$(( BUDGET - (t0 - START) ))
  echo "== $name ($(date -u +%T))" >> "$LOG"
  if (( left < 5 )); then
    echo "budget: ${BUDGET} s spent" > "$WORK/$name.out"; echo "skip: the ${BUDGET} s budget is spent" >> "$LOG"
    python3 scripts/gpu_check.py record "$SUMMARY" "$name" budget 0 "$WORK/$name.out"; return
  fi
  timeout -k 5 "$(( limit < left ? limit : left ))" "$@" > "$WORK/$name.out" 2>&1
  local rc=$?
  cat "$WORK/$name.out" >> "$LOG"
  local status
  case $rc in 0) status=pass ;; 77) status=skip ;; 124|137) status=timeout ;; *) status=fail ;; esac
  [[ $status == fail || $status == timeout ]] && FAILED=1
  local details="$WORK/$name.json"; [ -f "$details" ] || { tail -c 4000 "$WORK/$name.out" > "$WORK/$name.tail"; details="$WORK/$name.tail"; }
  python3 scripts/gpu_check.py record "$SUMMARY" "$name" "$status" "$(( $(date +%s) - t0 ))" "$details"
  printf '  %-18s %-8s %4ss\n' "$name" "$status" "$(( $(date +%s) - t0 ))"
}
need_gpu() { (( REHEARSE )) && { echo "skip: --rehearse (no GPU)"; exit 77; }; command -v nvidia-smi > /dev/null || { echo "skip: no nvidia-smi"; exit 77; }; }
need_nvcc() { command -v nvcc > /dev/null || { echo "skip: no nvcc on PATH"; exit 77; }; }
export -f need_gpu need_nvcc; export REHEARSE

install() {  # the carried wheels, then the project, into $PY's environment; never from an index
  local wheels=("$WHEELS"/*.whl)
  [ -e "${wheels[0]}" ] || { echo "no wheels in $WHEELS: run scripts/fetch_gpu_wheels.sh here and carry $WHEELS"; return 1; }
  "${PIP[@]}" install -q --no-deps --no-index --no-compile --ignore-installed "${wheels[@]}" || return 1
  "${PIP[@]}" install -q --no-deps --no-index --no-build-isolation --ignore-installed -e . || return 1
  # every module the device image lacks must be the carried copy (in the venv when rehearsing)
  "$PY" - "$CARRIED_MODULES" "$REHEARSE" <<'PY'
import importlib, json, sys, sysconfig
site = sysconfig.get_paths()["purelib"]
where = {m: importlib.import_module(m).__file__ for m in sys.argv[1].split()}
print(json.dumps(where, indent=1))
stray = {m: f for m, f in where.items() if sys.argv[2] == "1" and not f.startswith(site)}
sys.exit(f"not the carried copies: {stray}" if stray else 0)
PY
}

echo "gpu_check: $( (( REHEARSE )) && echo "rehearsal (CPU)" || echo "device") run, results in $DEST"
PIP=("$PY" -m pip)
if (( REHEARSE )); then
  # no pip or setuptools of its own (ensurepip's old setuptools would shadow the system's, which builds
  # the editable install): the system's pip installs into it (pip --python)
  step venv 60 python3 -m venv --system-site-packages --without-pip "$WORK/venv"
  PY="$WORK/venv/bin/python"
  PIP=(python3 -m pip --python "$PY")
fi
export PY WHEELS CARRIED_MODULES
step install 90 bash -c "PIP=(${PIP[*]}); $(declare -f install); install"
ICPD=("$PY" -m icpd.cli)

step env 20 bash -c 'nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader || true
  nvcc --version | tail -2; compute-sanitizer --version | head -1 || true; command -v ncu || echo "no ncu"
  '"$PY"' -c "import torch, onnxruntime; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.is_available()); print(\"onnxruntime\", onnxruntime.__version__, onnxruntime.get_available_providers())"'

# every arch on the device; one when rehearsing (CI's compile_checks.sh already builds them all)
# (the device's build is compile_kernel's default, the very one ensure_cuda_op then finds in the cache)
if (( REHEARSE )); then ARCHS="sm_90"; else ARCHS=$("$PY" -c "from icpd.kernels.build import CUBIN_ARCHS; print(*CUBIN_ARCHS)"); fi
export ARCHS
# shellcheck disable=SC2016  # expanded by the inner bash
step kernel_build 120 bash -c 'need_nvcc && exec "$0" "$@"' "$PY" -c "
import os
from icpd.kernels import build
from icpd.kernels.cuda_op import default_cache_dir
archs = tuple(os.environ['ARCHS'].split())
kb = build.compile_kernel(default_cache_dir(), **({} if archs == build.CUBIN_ARCHS else {'archs': archs}))
print('built', kb.library, kb.cubin_archs, kb.ptx_arch, kb.skipped)"

# --no-werror (ICPD_NVCC_WERROR=0, as icpd.kernels.build reads it) drops -Werror here too
case ${ICPD_NVCC_WERROR:-1} in 0|false|no) NVCC_WERROR="" ;; *) NVCC_WERROR="-Werror all-warnings" ;; esac
# Order: what needs the GPU first (the budget may cut the tail); ptxas needs none (CI's rehearsal runs it too)
step sanitize_build 60 bash -c "need_nvcc && nvcc -std=c++17 -O2 -lineinfo $NVCC_WERROR -Xcompiler -Wall,-Wextra \
  $( (( REHEARSE )) && echo -arch=sm_90 || echo -arch=native ) -I icpd/kernels/plugin scripts/ndcg_sanitize.cu \
  icpd/kernels/ndcg_prior.cu -o $WORK/ndcg_sanitize"
for tool in memcheck racecheck synccheck initcheck; do
  for ns in 300 4096; do
    step "sanitize_${tool}_${ns}" 40 bash -c "need_gpu && [ -x $WORK/ndcg_sanitize ] || { echo 'skip: no sanitizer driver'; exit 77; }
      compute-sanitizer --tool $tool --error-exitcode 3 $WORK/ndcg_sanitize $ns 64 $( [ $tool = racecheck ] && echo 4 || echo 16 )"
  done
done

step kernel_time 60 bash -c "need_gpu && $PY scripts/gpu_check.py kernel-vs-torch $WORK/kernel_time.json"
if (( REHEARSE )) && [ "${GPU_CHECK_REHEARSE_FULL:-0}" != 1 ]; then
  # CI: the export-dependent CPU steps (export, ort_vs_torch_cpu, latency) take minutes on a loaded
  # 2-core runner and pytest runs them in the same job (tests/selftest); GPU_CHECK_REHEARSE_FULL=1 runs them
  # shellcheck disable=SC2054  # --only takes a comma-separated list
  SELFTEST=(--device cpu --only environment,rank_prior_cpu,kernel_coverage,kernel_cuda,torch_cuda,trt_sort,trt_plugin)
elif (( REHEARSE )); then SELFTEST=(--device cpu); else SELFTEST=(--device cuda); fi
step selftest 150 "${ICPD[@]}" selftest "${SELFTEST[@]}" --out "$DEST/selftest"

step torch_paper 120 bash -c "need_gpu && $PY scripts/gpu_check.py torch-paper $WORK/torch_paper.json"

step pytest_gpu 100 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/kernels tests/trt --junitxml="$DEST/pytest_gpu.xml"

# shellcheck disable=SC2016  # expanded by the inner bash
step ptxas 60 bash -c 'need_nvcc
gencode=(); for a in $(nvcc --list-gpu-code); do [[ " $ARCHS " == *" $a "* ]] && gencode+=(-gencode=arch=compute_${a#sm_},code=$a); done
nvcc -std=c++17 -O3 --threads 0 -Xptxas -v "${gencode[@]}" -c icpd/kernels/ndcg_prior.cu -o '"$WORK"'/ptxas.o > '"$WORK"'/ptxas.log 2>&1 || { cat '"$WORK"'/ptxas.log; exit 1; }
'"$PY"' scripts/gpu_check.py ptxas '"$WORK"'/ptxas.log '"$WORK"'/ptxas.json &&
'"$PY"' -c "from icpd.kernels import build; from icpd.kernels.cuda_op import default_cache_dir; open(\"'"$DEST"'/ndcg_prior.ptx\", \"w\").write(build.ptx_for(\"compute_75\", default_cache_dir()))"'

python3 - "$SUMMARY" "$(( $(date +%s) - START ))" "$REHEARSE" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
doc.update(total_seconds=int(sys.argv[2]), rehearsal=sys.argv[3] == "1")
json.dump(doc, open(sys.argv[1], "w"), indent=1)
print(f"gpu_check: {len(doc['steps'])} steps in {doc['total_seconds']} s; failed: {', '.join(doc['failed']) or 'none'}")
PY
exit $FAILED
