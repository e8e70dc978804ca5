#!/usr/bin/env bash
# `make train`: a short, time-bounded training run on the real NIH images, ending with the
# test-split evaluation report, figures and report.html.
set -euo pipefail
bin=${1:-build/malaria}
data=${2:?usage: train-default.sh MALARIA_BIN DATA_DIR}
if [ ! -d "$data/Parasitized" ] || [ ! -d "$data/Uninfected" ]; then
  cat >&2 <<TXT
No dataset at $data.
Get the public NIH malaria dataset (27,558 cell images) with:
  build/malaria download-data --out data
then run:  make train DATA=data/cell_images   (or set MALARIA_DATA)
TXT
  exit 1
fi
out=runs/train-$(date +%Y%m%d-%H%M%S)
echo "Training cellnet on $data for at most ${MINUTES:-3} minutes; results in $out"
"$bin" train --data "$data" --out "$out" --epochs 20 --time-limit "${MINUTES:-3}" --cache
