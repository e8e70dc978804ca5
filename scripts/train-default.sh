#!/usr/bin/env bash
# `make train`: a short, time-bounded training run on the real NIH images, ending with the
# test-split evaluation report, figures and report.html. DATA_DIR defaults to the binary's own
# default (MALARIA_DATA, or ../shared/data/cell_images), which explains itself when missing.
set -euo pipefail
bin=${1:-build/malaria}
data=${2:-}
out=runs/train-$(date +%Y%m%d-%H%M%S)
echo "Training cellnet for at most ${MINUTES:-3} minutes; results in $out"
"$bin" train ${data:+--data "$data"} --out "$out" --epochs 20 --time-limit "${MINUTES:-3}" --cache
