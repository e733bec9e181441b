#!/bin/sh
# put_jobs.sh - what `fastblocks put --jobs N` gains over one thread.
#
# Stores the same set of real photos (the test corpus' web/ folder) into a
# fresh store with --jobs 1 (the baseline) and with --jobs N for N up to the
# number of CPUs, and prints wall-clock seconds, images per second and the
# speed-up against --jobs 1 measured in the same run. Writes
# bench/results/cli_put_jobs.csv.
#
# Usage: bench/cli/put_jobs.sh [BUILD_DIR] [CORPUS_DIR] [REPEAT]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build}
corpus=${2:-$build/corpus}
repeat=${3:-3}
bin=$build/fastblocks
out=$here/../results
mkdir -p "$out"
csv=$out/cli_put_jobs.csv
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

files=$(find "$corpus/web" -type f -name '*.jpg' | sort)
n=$(echo "$files" | wc -l)
cpus=$(nproc)
echo "jobs,seconds,images_per_second,speedup" > "$csv"
base=""
j=1
while [ "$j" -le "$cpus" ]; do
    best=""
    r=0
    while [ "$r" -lt "$repeat" ]; do
        rm -rf "$tmp/data"
        t0=$(date +%s.%N)
        # shellcheck disable=SC2086
        "$bin" put --data "$tmp/data" --durability always --jobs "$j" --no-progress $files >/dev/null
        t1=$(date +%s.%N)
        s=$(echo "$t1 - $t0" | bc -l)
        if [ -z "$best" ] || [ "$(echo "$s < $best" | bc -l)" = 1 ]; then best=$s; fi
        r=$((r + 1))
    done
    [ -z "$base" ] && base=$best
    ips=$(echo "$n / $best" | bc -l)
    sp=$(echo "$base / $best" | bc -l)
    printf "%d,%.3f,%.2f,%.2f\n" "$j" "$best" "$ips" "$sp" >> "$csv"
    printf "put %d images, --jobs %d: %.3f s (best of %d), %.2f images/s, %.2fx of --jobs 1\n" \
        "$n" "$j" "$best" "$repeat" "$ips" "$sp"
    j=$((j * 2))
done
echo "wrote $csv"
