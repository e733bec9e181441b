#!/usr/bin/python3
"""Memory of the servers, in one run: `fastblocks serve` against nginx and the
Python re-creation of the original (../shared/baseline, README configuration).

Each server gets the web photos uploaded (nginx: the same WebP files on
disk), then wrk reads every image in rotation; the resident set (VmRSS, and
the peak VmHWM) of the server's whole process tree is read from /proc after
start, after the uploads and after the reads. The servers, the wrk client and
the upload client are those of bench/http/bench_http.py (imported, so both
benchmarks start their peers the same way).

    bench/memory/run.py [--build DIR] [--web DIR] [--out DIR] [--quick]

Writes OUT/memory.csv (default bench/results/memory/) and prints a table.
"""

import argparse
import csv
import os
import pathlib
import shutil
import signal
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "bench" / "http"))

import bench_http  # noqa: E402  (the HTTP benchmark's servers and clients)


def rss_kb(pids):
    """Sum of VmRSS and of VmHWM (kB) over the given processes."""
    rss = hwm = 0
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm += int(line.split()[1])
        except FileNotFoundError:
            pass
    return rss, hwm


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--web", default=os.path.join(os.environ.get("FB_CORPUS_DIR", ""), "web"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "memory"))
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            sys.exit(f"bench/memory: {tool} is not installed (make deps-bench)")
    duration = "2s" if a.quick else "5s"
    b = bench_http.Bench(argparse.Namespace(build=a.build, web=a.web, duration=duration,
                                            conns="16", quick=a.quick, only=""))
    rows = []

    def measure(name, proc, paths, stage_upload):
        r0 = rss_kb(proc.pids())
        if stage_upload is not None:
            stage_upload()
        r1 = rss_kb(proc.pids())
        w = bench_http.run_wrk(proc.url, paths, 16, duration)
        r2 = rss_kb(proc.pids())
        row = {"server": name, "images": len(paths.read_text().split()),
               "rss_start_kb": r0[0], "rss_uploaded_kb": r1[0], "rss_after_reads_kb": r2[0],
               "peak_kb": max(r0[1], r1[1], r2[1]), "reads_req_per_s": w["req_per_s"],
               "non2xx": w["non2xx"]}
        rows.append(row)
        print(f"  {name:22s} start {r0[0] / 1024:7.1f} MB  after uploads {r1[0] / 1024:7.1f} MB"
              f"  after reads {r2[0] / 1024:7.1f} MB  peak {row['peak_kb'] / 1024:7.1f} MB"
              f"  ({w['req_per_s']:.0f} req/s, non2xx={w['non2xx']})", flush=True)

    try:
        print(f"memory: web set {a.web}, wrk -c16 -d{duration}", flush=True)
        paths = b.tmp / "paths.txt"
        fb = b.fastblocks("mem")
        measure("fastblocks", fb, paths,
                lambda: bench_http.upload_all(fb.url, a.web, 4, paths))
        www = b.tmp / "www"
        subprocess.run([bench_http.PY, str(bench_http.BASELINE / "http_client.py"), "fetch",
                        fb.url, str(paths), str(www)], check=True, capture_output=True)
        assert fb.stop() == 0
        seed = b.seed("readme")
        seed_paths = b.tmp / "paths-seed.txt"
        measure("original (README cfg)", seed, seed_paths,
                lambda: bench_http.upload_all(seed.url, a.web, 4, seed_paths))
        seed.stop()
        ng = b.nginx(www)
        ng_paths = b.tmp / "paths-nginx.txt"
        ng_paths.write_text("".join(f"/{f.name}\n" for f in sorted(www.iterdir())))
        measure("nginx (static files)", ng, ng_paths, None)
        ng.stop(signal.SIGQUIT)
    finally:
        shutil.rmtree(b.tmp, ignore_errors=True)
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "memory.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {out / 'memory.csv'}")


if __name__ == "__main__":
    main()
