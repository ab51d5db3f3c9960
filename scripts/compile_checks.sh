#!/usr/bin/env bash
# CI compile checks of the rank-prior CUDA code, without a GPU or TensorRT libraries:
#  1. icpd/kernels/plugin/*.cpp (the C++ IPluginV3) with g++ -std=c++17 -fsyntax-only -Wall -Wextra -Werror
#     against the TensorRT 10.3 (JetPack 6) and 11.1 public headers in third_party/tensorrt/ beside the
#     repository (override: TRT_HEADERS_ROOT), with the CUDA headers of the machine's toolkit;
#  2. icpd/kernels/ndcg_prior.cu with nvcc, warnings as errors (-Werror all-warnings, host -Wall -Wextra
#     -Werror), compiled (-c, cubin) for every architecture of ARCHS the installed nvcc lists.
# Skips a part with a clear message only where its tools are missing (no CUDA headers / no nvcc / no
# header copy); any compiler diagnostic fails the script. 6.5 s on 2 cores with nvcc 13.0 (measured).
set -euo pipefail
cd "$(dirname "$0")/.."
ARCHS=(75 80 86 87 89 90 100 110 120)  # Turing .. Blackwell; 87 = Jetson Orin, 110 = Jetson Thor
TRT_ROOT="${TRT_HEADERS_ROOT:-../shared/third_party/tensorrt}"
CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
NVCC="$(command -v nvcc || true)"
[ -z "$NVCC" ] && [ -x "$CUDA_HOME/bin/nvcc" ] && NVCC="$CUDA_HOME/bin/nvcc"
CUDA_INC=""
for d in "$CUDA_HOME/include" "${NVCC:+$(dirname "$(dirname "$NVCC")")/include}"; do
  if [ -n "$d" ] && [ -f "$d/cuda_runtime_api.h" ]; then CUDA_INC="$d"; break; fi
done

if [ -z "$CUDA_INC" ]; then
  echo "compile_checks: SKIP plugin syntax check: no CUDA headers (cuda_runtime_api.h) under \$CUDA_HOME=$CUDA_HOME"
else
  for v in 10.3 11.1; do
    if [ ! -f "$TRT_ROOT/$v/include/NvInferRuntime.h" ]; then
      echo "compile_checks: SKIP plugin vs TensorRT $v: no headers at $TRT_ROOT/$v/include (set TRT_HEADERS_ROOT)"
      continue
    fi
    for f in icpd/kernels/plugin/*.cpp; do
      g++ -std=c++17 -fsyntax-only -Wall -Wextra -Werror -isystem "$TRT_ROOT/$v/include" -isystem "$CUDA_INC" \
        -I icpd/kernels/plugin "$f"
    done
    echo "compile_checks: OK  plugin (g++ -Wall -Wextra -Werror) against TensorRT $v headers"
  done
fi

if [ -z "$NVCC" ]; then
  echo "compile_checks: SKIP CUDA kernel: no nvcc on PATH or at \$CUDA_HOME/bin"
  exit 0
fi
offered=" $("$NVCC" --list-gpu-code | tr '\n' ' ') "
built=() skipped=()
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
for a in "${ARCHS[@]}"; do
  if [[ "$offered" == *" sm_$a "* ]]; then built+=("$a"); else skipped+=("sm_$a"); fi
done
gencode=(); for a in "${built[@]}"; do gencode+=("-gencode=arch=compute_$a,code=sm_$a"); done
"$NVCC" -std=c++17 -O3 -Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror,-fPIC "${gencode[@]}" \
  -c icpd/kernels/ndcg_prior.cu -o "$tmp/ndcg_prior.o"
echo "compile_checks: OK  ndcg_prior.cu with nvcc $("$NVCC" --version | grep -o 'release [0-9.]*') for${built[*]/#/ sm_}" \
  "${skipped:+(this nvcc cannot target: ${skipped[*]}; sm_72 Xavier needs the nvcc of JetPack 5)}"
