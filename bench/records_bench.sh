#!/usr/bin/env bash
# The lab workflow's speed: time to screen and store a 10-field slide through the API (one
# request per field, as the page sends them, and all ten in one request), on SQLite and on
# PostgreSQL; then the uploads per second two replicas behind HAProxy hold (tests/scale_test.sh
# with both replicas up). Run on an idle machine; quote the CPU and flags with the figures.
#   bench/records_bench.sh [BIN] [FIELDS_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$here/build/malaria}
fields=${2:-$here/../shared/data/fields/iml/images}
model=$here/models/malaria-cellnet-64.pt
work=$(mktemp -d /tmp/malaria-records-bench-XXXXXX)
chmod 755 "$work"
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  bash "$here/tests/pg_temp.sh" stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mapfile -t images < <(ls "$fields" | sort | head -10)
grep -m1 "model name" /proc/cpuinfo
echo "flags: $(grep -m1 -o 'avx512_bf16\|avx512f' /proc/cpuinfo | sort -u | tr '\n' ' ')(ONEDNN_MAX_CPU_ISA=${ONEDNN_MAX_CPU_ISA:-unset})"

slide_run() {  # $1: store URL
  "$bin" --threads 2 serve --model "$model" --store "$1" --port "$port" >"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 600); do  # until /ready answers; the limit only catches a hang
    curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break
    sleep 0.1
  done
  local base=http://127.0.0.1:$port new slide t0 t1 args=()
  new() { curl -sf -XPOST "$base/api/v1/slides" -H 'Content-Type: application/json' -d '{"sample_id": "bench"}' |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }
  curl -sf -o /dev/null -F "file=@$fields/${images[0]}" "$base/api/v1/slides/$(new)/fields"  # warm-up
  for round in 1 2 3; do
    slide=$(new)
    t0=$(date +%s.%N)
    for f in "${images[@]}"; do
      curl -sf -o /dev/null -H "Idempotency-Key: $round-$f" -F "file=@$fields/$f" "$base/api/v1/slides/$slide/fields"
    done
    t1=$(date +%s.%N)
    printf '  %s: 10 fields, one request each: %.2f s\n' "${1%%:*}" "$(echo "$t1 - $t0" | bc)"
  done
  args=()
  for f in "${images[@]}"; do args+=(-F "file=@$fields/$f"); done
  slide=$(new)
  t0=$(date +%s.%N)
  curl -sf -o /dev/null "${args[@]}" "$base/api/v1/slides/$slide/fields"
  t1=$(date +%s.%N)
  printf '  %s: 10 fields in one request: %.2f s\n' "${1%%:*}" "$(echo "$t1 - $t0" | bc)"
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}
echo "screen and store a 10-field slide (IML fields 1280x960, detector + field model, 2 threads):"
slide_run "sqlite:$work/records.db"
slide_run "$(bash "$here/tests/pg_temp.sh" start "$work/pg")"
echo "two replicas (1 thread each) behind HAProxy, 4 clients x 10 fields:"
SCALE_KILL=0 bash "$here/tests/scale_test.sh" "$bin" "$model" "$fields" 4 10 | grep -E "held|stored|PASS|FAIL"
