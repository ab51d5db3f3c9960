#!/usr/bin/env bash
# The README's "A first hour" walkthrough, command for command: a synthetic data set, the tiny
# preset trained on it, exported, scored on the novel classes, two support caches, and overlays.
# CLI only; CPU only; about 10 minutes on 2 cores. Usage: scripts/walkthrough.sh [DIR]
# (default first-hour/). Prints each step's wall time; DIR/times.txt keeps them.
set -euo pipefail

DIR=${1:-first-hour}
# One thread per process: the tiny network's ops are too small for two threads to pay, and on a
# shared machine two threads that wait on each other made training 5-10x slower (measured).
export OMP_NUM_THREADS=1

if [ -e "$DIR" ]; then
    echo "error: $DIR exists; pass another folder or remove it" >&2
    exit 2
fi
mkdir -p "$DIR"
TIMES="$DIR/times.txt"
step() {  # step NAME COMMAND...: run it, then print and record its wall time
    local name=$1 t0=$SECONDS
    shift
    echo "== $name: $*"
    "$@"
    echo "$name $((SECONDS - t0)) s" | tee -a "$TIMES"
}

DATA=$DIR/data
EMB=$DATA/class_embeddings_tiny.safetensors
# 1. 200 training and 200 validation tiles of 128 px (the tiny preset's input size) at zoom 4, so
#    the objects span several cells of the tiny network's 16x16 feature grid.
step synth icpd data synth --out "$DATA" --tiles 200 --size 128 --zoom 4
# 2. Fold 0: classes 6-15 train, 1-5 (ship, storage tank, baseball diamond, tennis court,
#    basketball court) are never seen in training and score the validation. The tiny preset's
#    random encoders train too (its default); lr 1e-3 (the authors' 1e-4 is for pretrained encoders).
step train icpd train --dataset isaid5i --root "$DATA" --fold 0 --preset tiny --class-embeddings "$EMB" \
    --out "$DIR/run" --epochs 30 --lr 1e-3 --episodes-per-epoch 256 --val-episodes 60
# 3. ONNX model dir, checked against PyTorch before it is written.
step export icpd export --checkpoint "$DIR/run/best.safetensors" --out "$DIR/model"
# 4. Every validation episode of fold 0 (1-shot, novel classes), through ONNX Runtime.
step eval icpd eval --dataset isaid5i --root "$DATA" --fold 0 --model "$DIR/model" --backend ort \
    --class-embeddings "$EMB" --json "$DIR/eval.json"
# 5. One support image per class, straight from the class-id label maps. Lines of the fold's list
#    end in _NN, the class id; the first tile with the class is the support, the next ones the scenes.
tiles() {  # tiles CLASS_ID N: the first N validation tiles that hold the class
    grep "_$(printf %02d "$1")\$" "$DATA/val/list/split0.txt" | head -n "$2" | sed 's/_instance_color_RGB.png_[0-9]*$//'
}
support_for() {  # support_for CLASS_ID NAME OUT
    local tile
    tile=$(tiles "$1" 1)
    icpd cache-support --model "$DIR/model" --class-name "$2" --image "$DATA/val/images/$tile.png" \
        --label "$DATA/val/semantic_png/${tile}_instance_color_RGB.png" --class-id "$1" \
        --class-embeddings "$EMB" --out "$3"
}
step cache-support support_for 5 "basketball court" "$DIR/basketball_court.support"
step cache-support support_for 2 "storage tank" "$DIR/storage_tank.support"
# 6. The next three tiles of each class (not the support tiles; five or six scenes), with probability maps
#    and prior heat maps.
mapfile -t SCENES < <({ tiles 5 4 | tail -n 3; tiles 2 4 | tail -n 3; } | sort -u | sed "s|^|$DATA/val/images/|; s|\$|.png|")
step infer icpd infer --model "$DIR/model" --support "$DIR/basketball_court.support" \
    --support "$DIR/storage_tank.support" "${SCENES[@]}" --out "$DIR/results" --save-probs --save-priors
echo "done: $DIR/eval.json (novel-class mIoU, FB-IoU), $DIR/results/*_overlay.png; step times in $TIMES"
