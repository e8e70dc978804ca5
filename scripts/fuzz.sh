#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (address and undefined sanitizers) and runs each for
# RUNS executions or SECONDS seconds, whichever comes first, on a seed corpus; crashers are copied
# to fuzz/regressions/TARGET/, where the ordinary test build replays them.
# Usage: scripts/fuzz.sh [SECONDS [RUNS]]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-300}
runs=${2:-100000}
build=$here/build-fuzz
data=$here/../shared/data
export CC=clang CXX=clang++
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMALARIA_FUZZ=ON \
  -DMALARIA_SANITIZE=address,undefined -DMALARIA_BUILD_BENCH=OFF \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link" >/dev/null
cmake --build "$build" -j "$(nproc)" --target fuzz_image fuzz_http fuzz_model_file

# Seeds are assembled at run time: real images come from ../shared, never from the repository.
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
mkdir -p "$corpus"/{image,http,model_file}
cells=("$data"/cell_images_128/Parasitized/*.png)
cp "${cells[@]:0:20}" "$corpus/image/"
python3 - "$corpus/image" <<'PY'
import sys, struct, zlib
d = sys.argv[1]
# A tiny BMP and TIFF so every header parser has a valid starting point.
w = h = 4
row = b"\x10\x20\x30" * w + b"\x00" * ((4 - (3 * w) % 4) % 4)
pix = row * h
bmp = b"BM" + struct.pack("<IHHI", 54 + len(pix), 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(pix), 0, 0, 0, 0) + pix
open(d + "/seed.bmp", "wb").write(bmp)
strip = b"\x80" * (w * h * 3)
entries = [(256, 3, 1, w), (257, 3, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 2),
           (273, 4, 1, 8 + 2 + 12 * 9 + 4), (277, 3, 1, 3), (278, 3, 1, h), (279, 4, 1, len(strip))]
ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0\0\0\0"
open(d + "/seed.tif", "wb").write(b"II*\0" + struct.pack("<I", 8) + ifd + strip)
PY
cp "$here"/fuzz/seeds/http/* "$corpus/http/"
cp "$here/models/malaria-cellnet-64.pt" "$here/models/malaria-detector.pt" "$corpus/model_file/"
head -c 200000 "$here/models/malaria-cellnet-64.pt" >"$corpus/model_file/truncated.pt"

status=0
for target in image http model_file; do
  mkdir -p "$build/artifacts/$target"
  echo "fuzz_$target: $runs runs or ${seconds}s"
  set +e
  # Leak checking is off: LibTorch and OpenBLAS keep global allocations until exit by design.
  ASAN_OPTIONS=detect_leaks=0 "$build/fuzz/fuzz_$target" -runs="$runs" -max_total_time="$seconds" -rss_limit_mb=4096 \
    -timeout=20 -print_final_stats=1 -artifact_prefix="$build/artifacts/$target/" \
    "$corpus/$target" >"$build/fuzz_$target.log" 2>&1
  rc=$?
  set -e
  grep -E "^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)" "$build/fuzz_$target.log" || true
  if [ "$rc" -ne 0 ]; then
    status=1
    echo "fuzz_$target FAILED (exit $rc); crashers kept in fuzz/regressions/$target:"
    tail -30 "$build/fuzz_$target.log"
    cp "$build/artifacts/$target"/* "$here/fuzz/regressions/$target/" 2>/dev/null || true
  fi
done
exit $status
