#!/usr/bin/env bash
# Starts the real server on a free loopback port and runs the Playwright page test against it.
set -euo pipefail
bin=$1 model=$2 data=$3 web=$4 shots=$5
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
"$bin" serve --model "$model" --field-model "$(dirname "$model")/malaria-field-64.pt" --port "$port" \
  >"$log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true; rm -f "$log" "$bad"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done
bad=$(mktemp --suffix=.png)
echo "not an image" >"$bad"
images=()
for c in Parasitized Uninfected; do
  while read -r f; do images+=("$data/$c/$f"); done < <(ls "$data/$c" | awk 'NR % 97 == 1' | head -3)
done
FIELD_IMAGE="$data/../fields/iml/images/PA171690.JPG" node "$(dirname "$0")/page_test.mjs" "http://127.0.0.1:$port" "$web" "$shots" "${images[@]}" "$bad"
