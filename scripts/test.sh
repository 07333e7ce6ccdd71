#!/usr/bin/env bash
# Runs every test npvdb has: the release build, then the same suite under
# AddressSanitizer + UndefinedBehaviorSanitizer (leaks included), then the fuzz
# targets for a short bounded time each. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)

./scripts/install-deps.sh

echo "== release build + tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$JOBS"
ctest --test-dir build --output-on-failure -j"$JOBS"

echo "== sanitizer build (ASan + UBSan + LeakSanitizer) + tests"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DNPVDB_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$JOBS"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$JOBS" -LE no-sanitizer

echo "== fuzz targets (libFuzzer, clang)"
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DNPVDB_FUZZ=ON >/dev/null
cmake --build build-fuzz -j"$JOBS"
ctest --test-dir build-fuzz --output-on-failure -j"$JOBS" -L fuzz

echo "== all tests passed"
