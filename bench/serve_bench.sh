#!/usr/bin/env bash
# Server benchmark: single-image requests at 1, 4 and 16 concurrent clients, and 32-image
# requests, with wrk. PIN=1 pins the server to core 0 and wrk to core 1 (on a 2-core machine the
# server then computes on one core); by default both share all cores. The setup and the CPU are
# written with the results to bench/results/CPU-MODEL/serve[-pinned].json.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$here/build/malaria}
model=${MODEL:-$here/models/malaria-cellnet-64.pt}
shared=${SHARED:-$here/../shared}
duration=${DURATION:-10}
images=("$shared"/data/cell_images_128/Parasitized/*.png)
image=${images[0]}
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cpu_model=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
out=$here/bench/results/$(echo "$cpu_model" | tr -cs 'A-Za-z0-9' '-' | sed 's/-$//')
mkdir -p "$out"
server_cpus="" load_cpus="" suffix="" pinned=false setup="server and wrk share all cores"
if [ "${PIN:-0}" = 1 ] && [ "$(nproc)" -ge 2 ]; then
  server_cpus="taskset -c 0" load_cpus="taskset -c 1" suffix="-pinned" pinned=true
  setup="server on core 0, wrk on core 1"
fi
echo "CPU: $cpu_model; setup: $setup"
$server_cpus "$bin" serve --model "$model" --port "$port" "$@" >/tmp/malaria-serve-bench.log 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done

results="{"
sep=""
for clients in 1 4 16; do
  line=$(IMAGE=$image $load_cpus wrk -t "$((clients < 2 ? 1 : 2))" -c "$clients" -d "${duration}s" --latency \
    -s "$here/bench/predict.lua" "http://127.0.0.1:$port" | tail -1)
  echo "single image, $clients client(s): $line"
  results+="$sep\"single_c$clients\": $line"
  sep=", "
done
line=$(IMAGE=$image FILES=32 $load_cpus wrk -t 2 -c 4 -d "${duration}s" -s "$here/bench/predict.lua" "http://127.0.0.1:$port" | tail -1)
echo "32-image requests, 4 clients: $line"
results+="$sep\"batch32_c4\": $line"
line=$(IMAGE=$image ROUTE="/api/v1/predict?explain=1" $load_cpus wrk -t 2 -c 4 -d "${duration}s" --latency \
  -s "$here/bench/predict.lua" "http://127.0.0.1:$port" | tail -1)
echo "single image with explain=1 (Grad-CAM), 4 clients: $line"
results+="$sep\"explain_c4\": $line"
field=$shared/data/fields/iml/images/PA171690.JPG
for clients in 1 2; do
  line=$(IMAGE=$field MIME=image/jpeg ROUTE=/api/v1/screen $load_cpus wrk -t 1 -c "$clients" -d "${duration}s" \
    --latency -s "$here/bench/predict.lua" "http://127.0.0.1:$port" | tail -1)
  echo "smear field 1280x960 to /api/v1/screen, $clients client(s): $line"
  results+="$sep\"screen_c$clients\": $line"
done
# A whole slide: 10 IML fields (1280x960 JPEG) in one request, one client, 5 times; the issue's
# target is under 2 s on 2 cores.
slide_args=()
for f in $(ls "$shared"/data/fields/iml/images/*.JPG | head -10); do slide_args+=(-F "file=@$f"); done
slide_times=()
for _ in 1 2 3 4 5; do
  slide_times+=("$(curl -s -o /dev/null -w '%{time_total}' "${slide_args[@]}" "http://127.0.0.1:$port/api/v1/screen")")
done
slide_median=$(printf '%s\n' "${slide_times[@]}" | sort -n | sed -n 3p)
echo "10-field slide in one request (1 client), seconds: ${slide_times[*]} (median $slide_median)"
results+="$sep\"slide10_seconds\": [$(IFS=,; echo "${slide_times[*]}")], \"slide10_median_seconds\": $slide_median"
results+=", \"cpu\": \"$cpu_model\", \"pinned\": $pinned, \"setup\": \"$setup\"}"
echo "$results" | /usr/bin/python3 -m json.tool >"$out/serve$suffix.json"
echo "results: $out/serve$suffix.json"
