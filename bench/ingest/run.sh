#!/usr/bin/env bash
# Ingest benchmark: FastBlocks' image module, `cwebp -q 80 -m 4` and the
# Python re-creation of the original, on the same photos in one run.
#
#   bench/ingest/run.sh BUILD_DIR CORPUS_DIR [RUNS] [SETS]
#
# CORPUS_DIR is built by ../shared/corpus/make_corpus.sh (web/ = 1-2 MP
# photos, large/ = 4-18 MP photos). SETS defaults to "web large".
# Results: bench/results/ingest/ (or $FB_INGEST_OUT) {fb,cwebp}_<set>.csv
# (per image), fb_<set>.json, original_<set>.json, summary.json, summary.csv.
# Times are best of RUNS per image (both tools), wall and CPU: on a shared,
# busy machine the CPU-time ratio is the one to trust.
set -euo pipefail
build=$(cd "${1:?usage: run.sh BUILD_DIR CORPUS_DIR [RUNS] [SETS]}" && pwd)
corpus=$(cd "${2:?corpus dir}" && pwd)
runs=${3:-3}
sets=${4:-web large}
here=$(cd "$(dirname "$0")" && pwd)
out=${FB_INGEST_OUT:-$here/../results/ingest}
mkdir -p "$out"
out=$(cd "$out" && pwd)
shared=${FB_SHARED_DIR:-$here/../../../shared}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export VIPS_WARNING=0

for set in $sets; do
    files=("$corpus/$set"/*.jpg)
    echo "== $set: ${#files[@]} images" >&2

    # FastBlocks, in process: per image (1 thread) and whole-set throughput (1, 2 threads).
    "$build/bench/bench_ingest" -r "$runs" -o "$out/fb_$set.csv" "${files[@]}" >"$out/fb_$set.json"

    # cwebp, best of RUNS per image: wall = its own "read input" + "encode picture"
    # times (-v); CPU = the child's rusage minus that of a cwebp run on a 1x1 image
    # (process start), so that both tools are charged for decode + encode only.
    /usr/bin/python3 - "$runs" "$tmp" "${files[@]}" >"$out/cwebp_$set.csv" <<'PY'
import os, resource, subprocess, sys
runs, tmp, files = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
def run(f, out):
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(["cwebp", "-v", "-q", "80", "-m", "4", f, "-o", out],
                       capture_output=True, text=True, check=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = sum(float(l.split()[-1].rstrip("s")) for l in p.stderr.splitlines()
               if l.startswith(("Time to read input", "Time to encode picture")))
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
tiny = os.path.join(tmp, "tiny.pgm")
open(tiny, "wb").write(b"P5\n1 1\n255\n\x80")
start = min(run(tiny, os.path.join(tmp, "t.webp"))[1] for _ in range(5))
print("file,cwebp_ms,cwebp_cpu_ms,cwebp_bytes,cwebp_start_cpu_ms")
for f in files:
    out = os.path.join(tmp, "c.webp")
    best = [min(x) for x in zip(*(run(f, out) for _ in range(runs)))]
    print(f"{f},{best[0]*1e3:.3f},{max(best[1]-start, 0)*1e3:.3f},{os.path.getsize(out)},{start*1e3:.3f}")
PY
    # cwebp as whole processes over the set, one and two at a time (process start included).
    t0=$(date +%s.%N)
    for f in "${files[@]}"; do cwebp -quiet -q 80 -m 4 "$f" -o "$tmp/p.webp"; done
    t1=$(date +%s.%N)
    printf '%s\n' "${files[@]}" | xargs -P 2 -I{} sh -c 'cwebp -quiet -q 80 -m 4 "$1" -o "$2/p.$$.webp"' _ {} "$tmp"
    t2=$(date +%s.%N)
    echo "{\"wall_1p_s\": $(echo "$t1 - $t0" | bc | sed "s/^\./0./"), \"wall_2p_s\": $(echo "$t2 - $t1" | bc | sed "s/^\./0./")}" >"$out/cwebp_procs_$set.json"

    # The original (Pillow, one thread, in process), same images and quality.
    RESULTS_DIR=$tmp /usr/bin/python3 "$shared/baseline/bench_ingest.py" "$corpus/$set" --runs 1 \
        --out "$out/original_$set.json" >&2
done

/usr/bin/python3 - "$out" $sets <<'PY'
import csv, json, os, sys
out, sets = sys.argv[1], sys.argv[2:]
summary = {}
rows = []
for s in sets:
    fb = json.load(open(f"{out}/fb_{s}.json"))
    procs = json.load(open(f"{out}/cwebp_procs_{s}.json"))
    orig = json.load(open(f"{out}/original_{s}.json"))
    per = {r["file"]: r for r in csv.DictReader(open(f"{out}/fb_{s}.csv"))}
    cw = {r["file"]: r for r in csv.DictReader(open(f"{out}/cwebp_{s}.csv"))}
    n = len(per)
    fb_ms = sum(float(r["fb_ms"]) for r in per.values())
    cw_ms = sum(float(r["cwebp_ms"]) for r in cw.values())
    fb_cpu = sum(float(r["fb_cpu_ms"]) for r in per.values())
    cw_cpu = sum(float(r["cwebp_cpu_ms"]) for r in cw.values())
    fb_b = sum(int(r["fb_bytes"]) for r in per.values())
    cw_b = sum(int(r["cwebp_bytes"]) for r in cw.values())
    mp = sum(float(r["megapixels"]) for r in per.values())
    worst = max(int(r["peak_extra_kb"]) * 1024 - (4 * float(r["megapixels"]) * 1e6 + 32 * 2**20)
                for r in per.values())
    orig_webp = orig["avg_webp_KB"] * 1e3 * orig["n"]
    load = os.getloadavg()[0]
    d = {
        "images": n, "megapixels": round(mp, 2),
        "fb_ms_per_image": round(fb_ms / n, 2), "cwebp_ms_per_image": round(cw_ms / n, 2),
        "fb_mp_per_s": round(mp / (fb_ms / 1e3), 3), "cwebp_mp_per_s": round(mp / (cw_ms / 1e3), 3),
        "throughput_vs_cwebp": round(cw_ms / fb_ms, 3),
        "fb_cpu_ms_per_image": round(fb_cpu / n, 2), "cwebp_cpu_ms_per_image": round(cw_cpu / n, 2),
        "cpu_throughput_vs_cwebp": round(cw_cpu / fb_cpu, 3),
        "fb_mp_per_cpu_s": round(mp / (fb_cpu / 1e3), 3),
        "cwebp_mp_per_cpu_s": round(mp / (cw_cpu / 1e3), 3),
        "fb_img_per_s_1t": round(fb["img_per_s_1t"], 3), "fb_img_per_s_2t": round(fb["img_per_s_2t"], 3),
        "fb_speedup_2t": round(fb["speedup_2t"], 3),
        # CPU seconds for the set with 2 threads over those with 1: about 1.0
        # when the threads do not slow each other down (no lock, allocator or
        # cache contention), whatever else runs on the machine.
        "fb_cpu_2t_vs_1t": round(fb["cpu_2t_s"] / fb["cpu_1t_s"], 3),
        "cwebp_procs_speedup_2p": round(procs["wall_1p_s"] / procs["wall_2p_s"], 3),
        "original_img_per_s": round(orig["configs"]["plain"]["img_per_s_wall"], 3),
        "original_readme_img_per_s": round(orig["configs"]["readme"]["img_per_s_wall"], 3),
        "fb_speedup_vs_original_1t": round(fb["img_per_s_1t"] / orig["configs"]["plain"]["img_per_s_wall"], 2),
        "size_vs_cwebp": round(fb_b / cw_b, 4), "size_vs_original": round(fb_b / orig_webp, 4),
        "fb_bytes": fb_b, "cwebp_bytes": cw_b, "original_webp_bytes": int(orig_webp),
        "max_peak_extra_MB": round(fb["max_peak_extra_kb"] / 1024, 1),
        "max_peak_extra_bytes_per_px": fb["max_peak_extra_bytes_per_px"],
        "peak_within_4B_per_px_plus_32MB": worst <= 0,
        "original_load1_start": orig.get("load1_start"), "load1_at_summary": round(load, 2),
    }
    summary[s] = d
    rows.append({"set": s, **d})
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
with open(f"{out}/summary.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
    w.writeheader()
    w.writerows(rows)
for s, d in summary.items():
    print(f"{s}: {d['images']} images, {d['megapixels']} MP")
    print(f"  wall ms/image: fb {d['fb_ms_per_image']}  cwebp {d['cwebp_ms_per_image']}  "
          f"-> throughput {d['throughput_vs_cwebp']}x cwebp; fb {d['fb_mp_per_s']} MP/s")
    print(f"  CPU ms/image: fb {d['fb_cpu_ms_per_image']}  cwebp {d['cwebp_cpu_ms_per_image']}  "
          f"-> {d['cpu_throughput_vs_cwebp']}x cwebp per core; fb {d['fb_mp_per_cpu_s']} MP/cpu-s, "
          f"cwebp {d['cwebp_mp_per_cpu_s']}")
    print(f"  2 threads: fb {d['fb_img_per_s_2t']} img/s = {d['fb_speedup_2t']}x one thread "
          f"(cwebp 2 processes: {d['cwebp_procs_speedup_2p']}x); CPU 2t/1t {d['fb_cpu_2t_vs_1t']}, "
          f"load {d['load1_at_summary']}")
    print(f"  original: {d['original_img_per_s']} img/s -> fb 1 thread {d['fb_speedup_vs_original_1t']}x")
    print(f"  size: {d['size_vs_cwebp']}x cwebp, {d['size_vs_original']}x original")
    print(f"  peak extra memory: max {d['max_peak_extra_MB']} MB, {d['max_peak_extra_bytes_per_px']} B/px; "
          f"within 4 B/px + 32 MB: {d['peak_within_4B_per_px_plus_32MB']}")
PY
