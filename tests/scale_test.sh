#!/usr/bin/env bash
# At scale: a real PostgreSQL, two `malaria serve` replicas sharing it, HAProxy in front (with
# deploy/haproxy.cfg). Several clients upload fields through the balancer, each with its own
# Idempotency-Key, retrying on any failure; one replica is killed with SIGKILL once uploads are
# under way. Checks that every upload that got a 2xx is stored exactly once, that the others
# succeed when retried, and prints the uploads per second the pair held.
#   scale_test.sh MALARIA_BIN MODEL FIELDS_DIR [CLIENTS] [UPLOADS_PER_CLIENT]
# SCALE_KILL=0 leaves both replicas up (bench/records_bench.sh measures throughput so).
set -euo pipefail
bin=$1 model=$2 fields=$3 clients=${4:-4} per_client=${5:-6}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/malaria-scale-XXXXXX)
chmod 755 "$work"  # the PostgreSQL server runs as "postgres" when this runs as root
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  bash "$here/tests/pg_temp.sh" stop "$work/pg" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_ready() {  # a state we can observe: /ready answers 200
  for _ in $(seq 1 600); do
    curl -sf "http://$1/ready" >/dev/null && return 0
    sleep 0.1
  done
  echo "FAIL: $1 never became ready" >&2
  return 1
}

db=$(bash "$here/tests/pg_temp.sh" start "$work/pg")
echo "postgres: $db"
p1=$(free_port) p2=$(free_port) pb=$(free_port)
for port in $p1 $p2; do
  "$bin" --threads 1 serve --model "$model" --store "$db" --port "$port" \
    >"$work/replica-$port.log" 2>&1 &
  pids+=($!)
done
replica1_pid=${pids[0]}
MALARIA_BALANCER=127.0.0.1:$pb MALARIA_REPLICA1=127.0.0.1:$p1 MALARIA_REPLICA2=127.0.0.1:$p2 \
  haproxy -db -f "$here/deploy/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)
wait_ready 127.0.0.1:$p1
wait_ready 127.0.0.1:$p2
wait_ready 127.0.0.1:$pb
lb=http://127.0.0.1:$pb

mapfile -t images < <(ls "$fields" | sort | head -n "$per_client")
[ "${#images[@]}" -eq "$per_client" ] || { echo "FAIL: fewer than $per_client fields in $fields"; exit 1; }

# One slide per client, created through the balancer.
slides=()
for c in $(seq 1 "$clients"); do
  slides+=("$(curl -sf -XPOST "$lb/api/v1/slides" -H 'Content-Type: application/json' \
    -d "{\"sample_id\": \"scale-$c\", \"site\": \"s\"}" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')")
done

# Each client uploads its fields in order; an upload is retried (same key) until it gets a 2xx.
# Every attempt is logged as: client key attempt http_status.
client() {
  local c=$1 slide=$2 i key status attempt
  for i in "${!images[@]}"; do
    key="client$c-field$i"
    for attempt in 1 2 3 4 5 6 7 8; do
      status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 300 -H "Idempotency-Key: $key" \
        -F "file=@$fields/${images[$i]}" "$lb/api/v1/slides/$slide/fields" || true)
      echo "$c $key $attempt $status" >>"$work/attempts.log"
      [[ $status == 2* ]] && break
    done
  done
}
start=$(date +%s.%N)
client_pids=()
for c in $(seq 1 "$clients"); do
  client "$c" "${slides[$((c - 1))]}" &
  client_pids+=($!)
done
# SIGKILL replica 1 once a quarter of the uploads have been answered.
answered() { awk '$4 ~ /^2/' "$work/attempts.log" 2>/dev/null | wc -l; }
# Polls a state (answers logged); the limit only catches a hang.
for _ in $(seq 1 3000); do
  [ "${SCALE_KILL:-1}" = 0 ] || [ "$(answered)" -ge $((clients * per_client / 4)) ] && break
  sleep 0.1
done
if [ "${SCALE_KILL:-1}" != 0 ]; then
  kill -9 "$replica1_pid"
  echo "killed replica 1 after $(answered) answered uploads"
fi
for p in "${client_pids[@]}"; do wait "$p"; done
elapsed=$(echo "$(date +%s.%N) - $start" | bc)

total=$((clients * per_client))
ok_keys=$(awk '$4 ~ /^2/ {print $2}' "$work/attempts.log" | sort -u | wc -l)
failed_attempts=$(awk '$4 !~ /^2/' "$work/attempts.log" | wc -l)
stored=$(psql "$db" -tAc "SELECT COUNT(*) FROM fields")
distinct=$(psql "$db" -tAc "SELECT COUNT(DISTINCT (slide_id, idempotency_key)) FROM fields")
# A stored field is whole: its cell rows match the count in its own answer.
partial=$(psql "$db" -tAc "SELECT COUNT(*) FROM fields f WHERE (SELECT COUNT(*) FROM cells c
  WHERE c.field_id = f.id) <> (f.result::json->'summary'->>'cells')::int")
echo "uploads: $total, answered 2xx: $ok_keys, failed attempts retried: $failed_attempts"
echo "fields stored: $stored (distinct keys: $distinct)"
printf 'held %.2f uploads/s over %.1f s with 2 replicas (%s), %d clients\n' \
  "$(echo "$total / $elapsed" | bc -l)" "$elapsed" \
  "$([ "${SCALE_KILL:-1}" = 0 ] && echo "both up" || echo "one killed part-way")" "$clients"
[ "$ok_keys" -eq "$total" ] || { echo "FAIL: $((total - ok_keys)) uploads never succeeded"; exit 1; }
[ "$stored" -eq "$total" ] || { echo "FAIL: $stored fields stored for $total uploads"; exit 1; }
[ "$distinct" -eq "$total" ] || { echo "FAIL: a key was stored twice"; exit 1; }
[ "$partial" -eq 0 ] || { echo "FAIL: $partial fields stored without all their cells"; exit 1; }
echo "PASS"
