#!/usr/bin/env bash
# Builds with AddressSanitizer and UndefinedBehaviorSanitizer (build-asan/) and runs the unit,
# model-file, server, hostile-client and fuzz-regression tests under them.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$here/build-asan
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMALARIA_SANITIZE=address,undefined \
  -DMALARIA_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target malaria unit_tests download_tests nn_tests server_tests \
  server_hostile_tests store_tests records_server_tests fuzz_image_replay fuzz_http_replay \
  fuzz_model_file_replay
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Our torch-free code is checked for leaks too; LibTorch and OpenBLAS keep global allocations until
# exit by design, so leak checking is off where they are loaded.
ASAN_OPTIONS=detect_leaks=1 "$build/tests/unit_tests" --gtest_brief=1
ASAN_OPTIONS=detect_leaks=1 "$build/tests/store_tests" --gtest_brief=1
export ASAN_OPTIONS=detect_leaks=0
cd "$build"
ctest --output-on-failure -j 2 -R 'Download|ModelFile|DetectorFile|Server|Hostile|Hardening|Records|fuzz_'
