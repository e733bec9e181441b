#!/usr/bin/env bash
# Storage engine benchmarks: bench_crc32c (CRC-32C implementations),
# bench_store (put/get/open against raw system calls) and the crash test at
# FB_CRASH_ITERATIONS kill points (default 1000).
# Usage: bench/store/run.sh [BUILD_DIR]   (default build)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
mkdir -p bench/results
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
FB_BENCH_RESULTS=bench/results "$build/bench/store/bench_crc32c"
echo
FB_BENCH_RESULTS=bench/results "$build/bench/store/bench_store"
echo
echo "crash test: ${FB_CRASH_ITERATIONS:-1000} kill -9 points"
FB_CRASH_ITERATIONS=${FB_CRASH_ITERATIONS:-1000} "$build/tests/test_recovery" 2>&1 | tail -4 |
    tee bench/results/store-crash.txt
