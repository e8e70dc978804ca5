#!/usr/bin/env bash
# Server benchmark: single-image requests at 1, 4 and 16 concurrent clients, and 32-image
# requests, with wrk (the load generator shares the machine's 2 cores with the server).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$here/build/malaria}
model=${MODEL:-$here/models/malaria-cellnet-64.pt}
shared=${SHARED:-$here/../shared}
duration=${DURATION:-10}
images=("$shared"/data/cell_images_128/Parasitized/*.png)
image=${images[0]}
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
out=$here/bench/results
mkdir -p "$out"
"$bin" serve --model "$model" --port "$port" "$@" >/tmp/malaria-serve-bench.log 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done

results="{"
sep=""
for clients in 1 4 16; do
  line=$(IMAGE=$image wrk -t "$((clients < 2 ? 1 : 2))" -c "$clients" -d "${duration}s" --latency \
    -s "$here/bench/predict.lua" "http://127.0.0.1:$port" | tail -1)
  echo "single image, $clients client(s): $line"
  results+="$sep\"single_c$clients\": $line"
  sep=", "
done
line=$(IMAGE=$image FILES=32 wrk -t 2 -c 4 -d "${duration}s" -s "$here/bench/predict.lua" "http://127.0.0.1:$port" | tail -1)
echo "32-image requests, 4 clients: $line"
results+="$sep\"batch32_c4\": $line}"
echo "$results" | /usr/bin/python3 -m json.tool >"$out/serve.json"
echo "results: $out/serve.json"
