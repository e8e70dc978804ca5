#!/usr/bin/env bash
# Training speed of `malaria` and the PyTorch reference, alternated: on a shared, noisy machine a
# neighbour's load shifts from minute to minute, and alternating runs spreads it over both tools.
#   bash bench/pairs.sh ARCH SIZE DATA [PAIRS] [STEPS]
#   e.g. bash bench/pairs.sh seed 128 ../shared/data/cell_images_128 3
# One line per pair: images/s of each (float32, 2 threads, same recipe as `make bench`) and ratio.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
arch=$1 size=$2 data=$3 pairs=${4:-3} steps=${5:-150}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in $(seq "$pairs"); do
  rm -rf "$tmp/run"
  "$here/build/malaria" --threads 2 train --data "$data" --out "$tmp/run" --arch "$arch" \
    --image-size "$size" --epochs 1 --max-steps "$steps" --split random --quiet --no-bf16 >/dev/null
  ours=$(/usr/bin/python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))[-1]['images_per_second'], 1))" "$tmp/run/history.json")
  ref=$(LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4 /usr/bin/python3 "$here/bench/reference_pytorch.py" \
    --arch "$arch" --data "$data" --image-size "$size" --epochs 1 --max-steps "$steps" --threads 2 2>/dev/null |
    tail -1 | /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['train_images_per_s'])")
  echo "$arch ${size}px, kernels ${ONEDNN_MAX_CPU_ISA:-uncapped}, pair $i: ours $ours, PyTorch $ref img/s," \
    "$(/usr/bin/python3 -c "print(round($ours / $ref, 2))")x"
done
