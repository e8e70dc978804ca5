#!/usr/bin/env bash
# The main job on the embedded default: a short, time-bounded training run on the real NIH
# images, ending with the test-split evaluation report.
set -euo pipefail
bin=${1:-build/malaria}
data=${2:-../shared/data/cell_images}
if [ ! -d "$data/Parasitized" ] || [ ! -d "$data/Uninfected" ]; then
  cat >&2 <<TXT
No dataset at $data.
The NIH malaria dataset (27,558 cell images) is public:
  https://data.lhncbc.nlm.nih.gov/public/Malaria/cell_images.zip
Unzip it and run:  make run DATA=/path/to/cell_images   (or set MALARIA_DATA)
TXT
  exit 1
fi
out=runs/default-$(date +%Y%m%d-%H%M%S)
echo "Training cellnet on $data for at most 3 minutes; results in $out"
"$bin" train --data "$data" --out "$out" --epochs 20 --time-limit 3 --cache
