#!/usr/bin/env bash
# Training throughput when the CPU is shared: the default job (cellnet, 64 px, 2 threads, float32,
# --cache) idle, then beside a competing CPU-bound process with 2 threads (two busy loops), for
# each OpenMP wait policy. Prints images/s and the share of idle speed kept.
# Usage: bench/shared_cpu.sh [BIN] [DATA]   (BENCH_STEPS=150 batches per run)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$here/build/malaria}
data=${2:-$here/../shared/data/cell_images}
steps=${BENCH_STEPS:-150}
tmp=$(mktemp -d)
hogs=()
stop_hogs() { for p in "${hogs[@]}"; do kill "$p" 2>/dev/null || true; done; hogs=(); }
trap 'stop_hogs; rm -rf "$tmp"' EXIT
echo "CPU: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores" >&2

run() {  # setting: ACTIVE, PASSIVE, or SPIN=N (libgomp spins N times, then sleeps)
  rm -rf "$tmp/run"
  local env=(OMP_WAIT_POLICY="$1")
  case $1 in SPIN=*) env=(GOMP_SPINCOUNT="${1#SPIN=}" OMP_WAIT_POLICY=ACTIVE) ;; esac
  env "${env[@]}" "$bin" --threads 2 train --data "$data" --out "$tmp/run" --epochs 1 \
    --max-steps "$steps" --split random --quiet --no-bf16 --cache >/dev/null 2>&1
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[-1]["images_per_second"])' \
    "$tmp/run/history.json"
}

printf '%-12s %10s %12s %8s\n' setting idle shared kept
for policy in ${POLICIES:-ACTIVE PASSIVE SPIN=100000}; do
  idle=$(run $policy)
  for _ in 1 2; do (while :; do :; done) & hogs+=($!); done
  shared=$(run $policy)
  stop_hogs
  printf '%-12s %10.1f %12.1f %7.0f%%\n' "$policy" "$idle" "$shared" "$(python3 -c "print(100*$shared/$idle)")"
done
