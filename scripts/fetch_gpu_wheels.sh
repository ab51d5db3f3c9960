#!/usr/bin/env bash
# Fill .gpu-wheels/ (git-ignored) with what the lent GPU machine's image lacks, for its Python 3.12
# (cp312, manylinux x86_64): pure-Python wheels of the packages below, no dependencies (the image has
# the rest: torch, torchvision, onnx, onnxruntime, numpy, regex, timm, huggingface_hub, ...). The
# device call carries the folder (`carry: [".gpu-wheels"]`); scripts/gpu_check.sh installs it with
# --no-deps --no-index. Lists each wheel with its size and fails above GPU_WHEELS_MAX_MIB (default 16:
# the whole working tree that travels is limited to 64 MiB). Versions are those CI tests with.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${GPU_WHEELS:-.gpu-wheels}
MAX_MIB=${GPU_WHEELS_MAX_MIB:-16}
WHEELS=(
  "open_clip_torch==3.3.0"        # the CLIP branch (icpd[torch])
  "ftfy==6.3.1"                   # open_clip's tokenizer
  "wcwidth==0.7.0"                # ftfy's
  "onnxconverter-common==1.16.0"  # FP16 model dirs (icpd[fp16], icpd build --precision fp16)
)
mkdir -p "$DEST"
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp --abi cp312 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$DEST" "${WHEELS[@]}"
# keep exactly the wanted versions (an older download of another version would make two)
shopt -s nullglob
for f in "$DEST"/*.whl; do
  keep=0 base=$(basename "$f"); base=${base,,}
  for w in "${WHEELS[@]}"; do
    name=${w%%==*}; name=${name,,}; version=${w##*==}
    [[ "$base" == "${name//-/_}-${version}-"* ]] && keep=1
  done
  (( keep )) || { echo "fetch_gpu_wheels: removing $(basename "$f") (not in the list)"; rm -f "$f"; }
done
total=0
for f in "$DEST"/*.whl; do
  size=$(stat -c %s "$f"); total=$(( total + size ))
  printf '  %-60s %8s MiB\n' "$(basename "$f")" "$(awk -v b="$size" 'BEGIN { printf "%.2f", b / 1048576 }')"
done
printf '  %-60s %8s MiB\n' "total" "$(awk -v b="$total" 'BEGIN { printf "%.2f", b / 1048576 }')"
(( total > 0 )) || { echo "fetch_gpu_wheels: no wheels in $DEST" >&2; exit 1; }
if (( total > MAX_MIB * 1048576 )); then
  echo "fetch_gpu_wheels: $DEST holds more than $MAX_MIB MiB" >&2; exit 1
fi
