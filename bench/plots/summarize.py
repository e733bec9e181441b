#!/usr/bin/python3
"""Summarises the raw runs of bench/run-all: for every figure the median and
the spread (min..max) over the repeated runs, and each ratio against a peer
computed within a run (same machine state for both sides) before taking the
median over runs.

    bench/plots/summarize.py [RESULTS_DIR]        (default bench/results)

Reads RESULTS_DIR/runs/<area>/<n>/ (written by bench/run-all) and
machine.json; writes summary.json (every figure: median, min, max, n,
values), summary.md (the tables of docs/BENCHMARKS.md) and plots/<name>.dat
(the data of bench/plots/<name>.gp). An area without runs is left out.
"""

import csv
import json
import math
import pathlib
import statistics
import sys

RESULTS = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else
                       pathlib.Path(__file__).resolve().parent.parent / "results")
RUNS = RESULTS / "runs"
PLOTS = RESULTS / "plots"

summary = {}
md = []


def stat(values):
    """Median and spread of the finite values (None if there are none)."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return None
    med = statistics.median(v)
    return {"median": med, "min": min(v), "max": max(v), "n": len(v),
            "spread_pct": 100.0 * (max(v) - min(v)) / med if med else 0.0, "values": v}


def fmt(s, digits=None, unit=""):
    """'median (min-max)' with a sensible number of digits."""
    if s is None:
        return "-"

    def f(x):
        if digits is not None:
            return f"{x:.{digits}f}"
        a = abs(x)
        if a >= 1000:
            return f"{x:,.0f}"
        if a >= 100:
            return f"{x:.0f}"
        if a >= 10:
            return f"{x:.1f}"
        if a >= 1:
            return f"{x:.2f}"
        return f"{x:.3g}"
    if s["n"] == 1 or s["min"] == s["max"]:
        return f"{f(s['median'])}{unit}"
    return f"{f(s['median'])}{unit} ({f(s['min'])}–{f(s['max'])})"


def ratio_fmt(s):
    return "-" if s is None else fmt(s, unit="×")


def runs_of(area):
    d = RUNS / area
    if not d.is_dir():
        return []
    return [p for p in sorted(d.iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else 0)
            if p.is_dir()]


def read_csv(path):
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return []


def read_json(path):
    try:
        return json.loads(pathlib.Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def div(a, b):
    return a / b if a is not None and b else None


def table(header, rows):
    md.append("| " + " | ".join(header) + " |")
    md.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for r in rows:
        md.append("| " + " | ".join(str(c) for c in r) + " |")
    md.append("")


def put(path, s):
    """Stores a stat under a dotted path of summary.json."""
    if s is None:
        return
    node = summary
    parts = path.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = s


def dat(name, header, rows):
    PLOTS.mkdir(parents=True, exist_ok=True)
    with open(PLOTS / f"{name}.dat", "w") as f:
        f.write(" ".join(header) + "\n")
        for r in rows:
            f.write(" ".join(f'"{c}"' if isinstance(c, str) else
                             ("NaN" if c is None else f"{c:.6g}") for c in r) + "\n")


def mm(s):
    """(median, min, max) for a .dat row."""
    return (s["median"], s["min"], s["max"]) if s else (None, None, None)


# ------------------------------------------------------------------ machine
machine = read_json(RESULTS / "machine.json") or {}
if machine:
    # The 1-minute load average at the start of every run kept (run.json),
    # whichever invocation of run-all made it.
    loads, per_area = [], {}
    for area_dir in sorted(RUNS.iterdir()) if RUNS.is_dir() else []:
        for r in sorted(area_dir.iterdir()) if area_dir.is_dir() else []:
            j = read_json(r / "run.json")
            if j and j.get("load_start") is not None:
                loads.append(j["load_start"])
                per_area.setdefault(area_dir.name, []).append(j["load_start"])
    summary["machine"] = {k: machine.get(k) for k in
                          ("date", "nproc", "cpu", "kernel", "debian", "mem_total", "commit",
                           "quick", "runs", "corpus")}
    summary["machine"]["load1"] = stat(loads)
    summary["machine"]["load1_per_area"] = {a: stat(v) for a, v in per_area.items()}
    md.append("## Machine\n")
    md.append(f"{machine.get('nproc')} cores ({machine.get('cpu')}), "
              f"{machine.get('mem_total')} RAM, kernel {machine.get('kernel')}, "
              f"Debian {machine.get('debian')}; commit {machine.get('commit')}, "
              f"last run-all started {machine.get('date')}; runs per area: "
              + ", ".join(f"{a} {len(v)}" for a, v in per_area.items())
              + f"{' (--quick)' if machine.get('quick') else ''}; corpus {machine.get('corpus')}; "
              f"1-minute load average at the start of the runs: {fmt(stat(loads))} ("
              + ", ".join(f"{a} {fmt(stat(v))}" for a, v in per_area.items()) + ").\n")

# ------------------------------------------------------------------ ingest
runs = runs_of("ingest")
if runs:
    per = [read_json(r / "summary.json") or {} for r in runs]
    sets = sorted({s for p in per for s in p}, key=lambda s: (s != "web", s))
    md.append("## Ingest: conversion to WebP (in process, one image at a time)\n")
    rows, drows = [], []
    for s in sets:
        g = {k: stat([p[s].get(k) for p in per if s in p]) for k in
             ("images", "megapixels", "fb_ms_per_image", "cwebp_ms_per_image",
              "throughput_vs_cwebp", "cpu_throughput_vs_cwebp", "fb_cpu_ms_per_image",
              "cwebp_cpu_ms_per_image", "fb_img_per_s_1t", "fb_img_per_s_2t", "fb_speedup_2t",
              "cwebp_procs_speedup_2p", "original_img_per_s", "original_readme_img_per_s",
              "fb_speedup_vs_original_1t", "size_vs_cwebp", "size_vs_original",
              "max_peak_extra_MB", "max_peak_extra_bytes_per_px")}
        g["vs_original_readme"] = stat([div(p[s]["fb_img_per_s_1t"],
                                            p[s]["original_readme_img_per_s"])
                                        for p in per if s in p])
        g["original_ms_per_image"] = stat([div(1000.0, p[s]["original_img_per_s"])
                                           for p in per if s in p])
        for k, v in g.items():
            put(f"ingest.{s}.{k}", v)
        n = int(g["images"]["median"]) if g["images"] else 0
        rows.append([f"{s} ({n} photos)", fmt(g["fb_ms_per_image"]), fmt(g["cwebp_ms_per_image"]),
                     ratio_fmt(g["throughput_vs_cwebp"]), ratio_fmt(g["cpu_throughput_vs_cwebp"]),
                     fmt(g["original_ms_per_image"]),
                     ratio_fmt(g["fb_speedup_vs_original_1t"]),
                     ratio_fmt(g["vs_original_readme"]), ratio_fmt(g["size_vs_cwebp"]),
                     ratio_fmt(g["size_vs_original"])])
        drows.append([s, *mm(g["fb_ms_per_image"]), *mm(g["cwebp_ms_per_image"]),
                      *mm(g["original_ms_per_image"])])
    table(["set", "FastBlocks ms/image", "cwebp ms/image", "speed vs cwebp",
           "CPU efficiency vs cwebp", "original ms/image (plain)", "speed vs original (plain)",
           "vs original (README cfg)", "bytes vs cwebp", "bytes vs original"], rows)
    rows = []
    for s in sets:
        g = summary["ingest"][s]
        rows.append([s, fmt(g.get("fb_img_per_s_1t")), fmt(g.get("fb_img_per_s_2t")),
                     ratio_fmt(g.get("fb_speedup_2t")), ratio_fmt(g.get("cwebp_procs_speedup_2p")),
                     fmt(g.get("max_peak_extra_MB"), unit=" MB"),
                     fmt(g.get("max_peak_extra_bytes_per_px"), unit=" B/px")])
    table(["set", "FastBlocks img/s, 1 thread", "2 threads", "2-thread speed-up",
           "cwebp 2 processes speed-up", "peak extra memory", "per pixel"], rows)
    dat("ingest", ["set", "fb", "fb_min", "fb_max", "cwebp", "cwebp_min", "cwebp_max",
                   "original", "original_min", "original_max"], drows)

# ------------------------------------------------------------------ codec
runs = runs_of("codec")
if runs:
    ops = {}
    for r in runs:
        for row in read_csv(r / "codec.csv"):
            ops.setdefault(row["operation"], []).append(row)
    md.append("## Record codecs against the WebP encode (per image)\n")
    rows = []
    for op, lst in ops.items():
        us = stat([num(x["us_per_image"]) for x in lst])
        fr = stat([num(x["fraction_of_webp_encode"]) for x in lst])
        put(f"codec.{op}.us_per_image", us)
        put(f"codec.{op}.fraction_of_webp_encode", fr)
        frs = "-" if fr is None else (f"{100 * fr['median']:.3f}%" if fr["median"] < 1 else "100%")
        rows.append([op, fmt(us, unit=" µs"), frs])
    table(["operation", "time per image", "share of the WebP encode"], rows)

# ------------------------------------------------------------------ store
runs = runs_of("store")
if runs:
    js = [read_json(r / "store.json") or {} for r in runs]
    md.append("## Durability modes: 60 KiB puts against raw system calls (same disk, same run)\n")
    rows, drows = [], []
    raw_sync = stat([j.get("raw_fdatasync_ops") for j in js])
    raw_fast = stat([j.get("raw_pwrite_ops") for j in js])
    put("store.raw_fdatasync_ops", raw_sync)
    put("store.raw_pwrite_ops", raw_fast)
    rows.append(["raw pwrite + fdatasync, 1 thread", fmt(raw_sync), "1 (baseline)"])
    rows.append(["raw pwrite, 1 thread", fmt(raw_fast), "1 (baseline)"])
    ceil = stat([j.get("raw_group16_fdatasync_ops") for j in js])
    ceil_r = stat([div(j.get("raw_group16_fdatasync_ops"), j.get("raw_fdatasync_ops"))
                   for j in js])
    put("store.raw_group16_fdatasync_ops", ceil)
    if ceil:
        rows.append(["ceiling: raw 16 pwrites + one fdatasync, 1 thread", fmt(ceil),
                     f"{ratio_fmt(ceil_r)} raw fdatasync: the most any group commit can gain "
                     "on this disk"])
    drows.append(["raw+fdatasync", *mm(raw_sync)])
    drows.append(["raw pwrite", *mm(raw_fast)])
    for mode in ("always", "batch", "none"):
        for t in (1, 16):
            k = f"put_{mode}_{t}t"
            ops = stat([j.get(k, {}).get("ops") for j in js])
            rat = stat([j.get(k, {}).get("ratio") for j in js])
            put(f"store.{k}.ops", ops)
            put(f"store.{k}.ratio", rat)
            base = "fdatasync" if mode == "always" else "pwrite"
            label = f"{ratio_fmt(rat)} raw {base}"
            vs_ceil = stat([j.get("put_always_16t_vs_ceiling") for j in js])
            if mode == "always" and t == 16 and vs_ceil:
                put("store.put_always_16t_vs_ceiling", vs_ceil)
                label += f", {ratio_fmt(vs_ceil)} the ceiling"
            rows.append([f"{mode}, {t} thread{'s' if t > 1 else ''}", fmt(ops), label])
            drows.append([f"{mode} {t}t", *mm(ops)])
    table(["put", "ops/s", "ratio"], rows)
    dat("durability", ["mode", "ops", "ops_min", "ops_max"], drows)
    g = stat([j.get("get_ops") for j in js])
    p = stat([j.get("pread_ops") for j in js])
    gr = stat([j.get("get_ratio") for j in js])
    put("store.get_ops", g)
    put("store.pread_ops", p)
    put("store.get_ratio", gr)
    table(["uncached read, 60 KiB, random", "ops/s", "ratio"],
          [["pread of the same ranges", fmt(p), "1 (baseline)"],
           ["fb_get (header and CRC checked)", fmt(g), ratio_fmt(gr)]])
    opens = {}
    for r in runs:
        for row in read_csv(r / "open.csv"):
            opens.setdefault(int(row["records"]), []).append(row)
    if opens:
        md.append("## Start-up time against store size (`fb_open` of small records in sealed "
                  "blocks)\n")
        rows, drows = [], []
        for n in sorted(opens):
            sec = stat([num(x["open_seconds"]) for x in opens[n]])
            rss = stat([num(x["rss_bytes_per_record"]) for x in opens[n]])
            put(f"store.open.{n}.seconds", sec)
            put(f"store.open.{n}.rss_bytes_per_record", rss)
            rate = stat([div(n, num(x["open_seconds"])) for x in opens[n]])
            rows.append([f"{n:,}", fmt(sec, unit=" s"), fmt(rate), fmt(rss, unit=" B")])
            drows.append([n, *mm(sec)])
        table(["records", "open time", "records/s", "memory per record"], rows)
        dat("startup", ["records", "seconds", "seconds_min", "seconds_max"], drows)
    crash = [(r / "store-crash.txt").read_text().strip() for r in runs
             if (r / "store-crash.txt").exists()]
    if crash:
        md.append("Crash test (kill -9 at random points, reopen, check): last lines of run 1:\n")
        md.append("```text\n" + crash[0] + "\n```\n")

# ------------------------------------------------------------------ cache
runs = runs_of("cache")
if runs:
    miss = {}
    for r in runs:
        for row in read_csv(r / "miss_ratio.csv"):
            miss.setdefault((row["trace"], float(row["cache_pct"]), row["policy"]), []).append(
                num(row["miss_ratio"]))
    traces = sorted({k[0] for k in miss})
    pcts = sorted({k[1] for k in miss})
    md.append("## Cache miss ratio: S3-FIFO against LRU (same traces, same byte budget)\n")
    rows = []
    for t in traces:
        for pc in pcts:
            lru = stat(miss.get((t, pc, "lru"), []))
            s3 = stat(miss.get((t, pc, "s3fifo"), []))
            if lru is None or s3 is None:
                continue
            rel = stat([div(a, b) for a, b in zip(miss[(t, pc, "s3fifo")], miss[(t, pc, "lru")])])
            put(f"cache.miss.{t}.{pc:g}%.lru", lru)
            put(f"cache.miss.{t}.{pc:g}%.s3fifo", s3)
            put(f"cache.miss.{t}.{pc:g}%.s3fifo_over_lru", rel)
            rows.append([t, f"{pc:g}%", fmt(lru, digits=3), fmt(s3, digits=3), ratio_fmt(rel)])
    table(["trace", "cache size (% of the bytes)", "LRU miss ratio", "S3-FIFO miss ratio",
           "S3-FIFO / LRU"], rows)
    header = ["cache_pct"]
    for t in traces:
        header += [f"LRU_{t}", f"S3-FIFO_{t}"]
    drows = []
    for pc in pcts:
        row = [pc]
        for t in traces:
            for pol in ("lru", "s3fifo"):
                s = stat(miss.get((t, pc, pol), []))
                row.append(s["median"] if s else None)
        drows.append(row)
    dat("cache", header, drows)
    hits = {}
    for r in runs:
        for row in read_csv(r / "hit_throughput.csv"):
            hits.setdefault((row["policy"], int(row["threads"])), []).append(row)
    rows = []
    for (pol, t), lst in sorted(hits.items()):
        s = stat([num(x["lookups_per_s"]) for x in lst])
        v = stat([num(x["vs_lru"]) for x in lst])
        sc = stat([num(x["scaling_vs_1_thread"]) for x in lst])
        put(f"cache.hits.{pol}.{t}t.lookups_per_s", s)
        put(f"cache.hits.{pol}.{t}t.vs_lru", v)
        put(f"cache.hits.{pol}.{t}t.vs_1_thread", sc)
        rows.append([pol, t, fmt(s), ratio_fmt(sc), ratio_fmt(v)])
    if rows:
        md.append("Hit path (Zipf 1.0 over 8,192 cached images); `refcount_only` is no cache, "
                  "only the reference taken and dropped on each image's shared buffer: the "
                  "2-thread ceiling of any cache that hands out reference-counted bytes here.\n")
        table(["policy", "threads", "hit lookups/s", "vs 1 thread", "vs LRU (one mutex)"], rows)

# ------------------------------------------------------------------ http
runs = runs_of("http")
if runs:
    reads = [read_csv(r / "reads.csv") for r in runs]
    ups = [read_csv(r / "uploads.csv") for r in runs]
    bursts = [read_csv(r / "burst.csv") for r in runs]

    def find(rows, scenario, server, c):
        for x in rows:
            if x["scenario"] == scenario and x["server"] == server and int(x["conns"]) == c:
                return x
        return None

    keys = []
    for rr in reads:
        for x in rr:
            k = (x["scenario"], x["server"], int(x["conns"]))
            if k not in keys:
                keys.append(k)
    md.append("## HTTP reads (wrk over every stored image, 127.0.0.1)\n")
    rows, drows, lrows = [], [], []
    for sc, sv, c in keys:
        xs = [find(rr, sc, sv, c) for rr in reads]
        xs = [x for x in xs if x]
        rps = stat([num(x["req_per_s"]) for x in xs])
        p50 = stat([num(x["p50_ms"]) for x in xs])
        p99 = stat([num(x["p99_ms"]) for x in xs])
        bad = sum(int(x["non2xx"] or 0) for x in xs)
        vs_ng = stat([div(num(x["req_per_s"]), num((find(rr, "static", "nginx", c) or {})
                                                    .get("req_per_s")))
                      for x, rr in zip(xs, reads)]) if sv != "nginx" else None
        base = f"http.reads.{sc}.{sv}.c{c}"
        put(base + ".req_per_s", rps)
        put(base + ".p50_ms", p50)
        put(base + ".p99_ms", p99)
        put(base + ".vs_nginx", vs_ng)
        put(base + ".non2xx", {"median": bad, "min": bad, "max": bad, "n": len(xs),
                               "spread_pct": 0, "values": [bad]})
        rows.append([sc, sv, c, fmt(rps), fmt(p50, unit=" ms"), fmt(p99, unit=" ms"),
                     ratio_fmt(vs_ng), bad])
        label = f"{sv} {sc} c{c}" if sv == "fastblocks" else f"{sv} c{c}"
        drows.append([label, *mm(rps)])
        lrows.append([label, p50["median"] if p50 else None, p99["median"] if p99 else None])
    table(["scenario", "server", "conns", "req/s", "p50", "p99", "vs nginx", "non-2xx"], rows)
    dat("http_reads", ["label", "rps", "rps_min", "rps_max"], drows)
    dat("http_latency", ["label", "p50_ms", "p99_ms"], lrows)
    # FastBlocks against the original at the original's connection count, within each run.
    rows = []
    for seed in ("seed-readme", "seed-fixedresp"):
        cs = sorted({k[2] for k in keys if k[1] == seed})
        for c in cs:
            r = stat([div(num((find(rr, "hot", "fastblocks", c) or {}).get("req_per_s")),
                          num((find(rr, "seed", seed, c) or {}).get("req_per_s")))
                      for rr in reads])
            put(f"http.reads.hot_vs_{seed}.c{c}", r)
            rows.append([f"hot reads vs {seed}", c, ratio_fmt(r)])
    for conc in (1, 4):
        fb = [next((num(u["img_per_s"]) for u in uu if u["server"] == "fastblocks"
                    and int(u["conc"]) == conc), None) for uu in ups]
        sd = [next((num(u["img_per_s"]) for u in uu if u["server"] == "seed-readme"
                    and int(u["conc"]) == conc), None) for uu in ups]
        put(f"http.uploads.fastblocks.conc{conc}.img_per_s", stat(fb))
        put(f"http.uploads.seed-readme.conc{conc}.img_per_s", stat(sd))
        r = stat([div(a, b) for a, b in zip(fb, sd)])
        put(f"http.uploads.vs_seed.conc{conc}", r)
        if stat(fb):
            rows.append([f"uploads, {conc} at a time: {fmt(stat(fb))} img/s vs "
                         f"{fmt(stat(sd))} img/s", conc, ratio_fmt(r)])
    b = stat([num(x[0]["p99_ratio"]) for x in bursts if x])
    put("http.burst.read_p99_ratio", b)
    if b:
        bi = stat([num(x[0]["idle_p99_ms"]) for x in bursts if x])
        bb = stat([num(x[0]["busy_p99_ms"]) for x in bursts if x])
        rows.append([f"read p99 during 4 concurrent uploads ({fmt(bb, unit=' ms')}) over idle "
                     f"({fmt(bi, unit=' ms')})", 16, ratio_fmt(b)])
    if rows:
        table(["ratio (same run)", "conns", "median (min–max)"], rows)

# ------------------------------------------------------------------ python
runs = runs_of("python")
if runs:
    inproc = [read_csv(r / "inprocess.csv") for r in runs]
    md.append("## Python package against the original (in process, README configuration)\n")
    rows = []
    for k, label in (("save_seq_img_s", "save_image one at a time (img/s)"),
                     ("save_conc4_img_s", "save_image 4 at a time (img/s)"),
                     ("read_hot_per_s", "read_image, cached (reads/s)"),
                     ("read_cold_per_s", "read_image, cache off (reads/s)"),
                     ("stall_ms", "worst event-loop stall during saves (ms)")):
        o = [num(next((x[k] for x in rr if x["impl"] == "original"), None)) for rr in inproc]
        f = [num(next((x[k] for x in rr if x["impl"] == "fastblocks"), None)) for rr in inproc]
        so, sf = stat(o), stat(f)
        r = stat([div(a, b) for a, b in zip(f, o)])
        put(f"python.inprocess.{k}.original", so)
        put(f"python.inprocess.{k}.fastblocks", sf)
        put(f"python.inprocess.{k}.ratio", r)
        rows.append([label, fmt(so), fmt(sf), ratio_fmt(r)])
    table(["what", "original", "FastBlocks", "FastBlocks / original"], rows)
    js = [read_json(r / "inprocess.json") or {} for r in runs]
    fl = stat([j.get("stall_floor_ms") for j in js])
    idle = stat([j.get("stall_idle_ms") for j in js])
    put("python.inprocess.stall_floor_ms", fl)
    put("python.inprocess.stall_idle_ms", idle)
    if fl or idle:
        md.append(f"The same 1 ms ticker on this machine, same run: {fmt(idle, unit=' ms')} "
                  f"worst stall with no work at all (timer and scheduler jitter), "
                  f"{fmt(fl, unit=' ms')} while 4 GIL-free threads hash.\n")
    # The loop stall split up (bench_inprocess.py's docstring says what each figure means).
    rows = []
    for k, label in (("step_max_ms", "longest loop step while saving, wall (ms)"),
                     ("step_cpu_max_ms", "longest loop step while saving, CPU (ms)"),
                     ("tick_idle_p99_ms", "1 ms ticker lateness p99, idle (ms)"),
                     ("tick_saves_p99_ms", "1 ms ticker lateness p99, 4 saves running (ms)"),
                     ("tick_idle_max_ms", "1 ms ticker lateness max, idle (ms)"),
                     ("tick_saves_max_ms", "1 ms ticker lateness max, 4 saves running (ms)")):
        vals = {impl: stat([num(next((x.get(k) for x in rr if x["impl"] == impl), None))
                            for rr in inproc]) for impl in ("original", "fastblocks")}
        if vals["fastblocks"]:
            put(f"python.stall.{k}.fastblocks", vals["fastblocks"])
            rows.append([label, fmt(vals["original"]), fmt(vals["fastblocks"])])
    if rows:
        md.append("Event-loop stall, measured apart (2 x (3 s idle + 3 s of 4 concurrent saves), "
                  "GC off while measuring):\n")
        table(["what", "original", "FastBlocks"], rows)
    fa = read_csv(runs[0] / "fastapi.csv")
    if fa:
        by = {}
        for x in fa:
            by.setdefault((x["app"], int(x["conns"])), []).append(x)
        rows, drows = [], []
        for (app, c), lst in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            rps = stat([num(x["req_per_s"]) for x in lst])
            p99 = stat([num(x["p99_ms"]) for x in lst])
            r = stat([div(num(a["req_per_s"]), num(b["req_per_s"]))
                      for a, b in zip(lst, by.get(("seed", c), []))])
            put(f"python.fastapi.{app}.c{c}.req_per_s", rps)
            put(f"python.fastapi.{app}.c{c}.p99_ms", p99)
            put(f"python.fastapi.{app}.c{c}.vs_seed", r)
            rows.append([app, c, fmt(rps), fmt(p99, unit=" ms"), ratio_fmt(r)])
            if c == min(k[1] for k in by):
                drows.append([app, *mm(rps)])
        md.append("FastAPI reads (uvicorn, one worker, wrk), the same images:\n")
        table(["app", "conns", "req/s", "p99", "vs the original app"], rows)
        dat("fastapi", ["app", "rps", "rps_min", "rps_max"], drows)

# ------------------------------------------------------------------ cli
runs = runs_of("cli")
if runs:
    by = {}
    for r in runs:
        for row in read_csv(r / "cli_put_jobs.csv"):
            by.setdefault(int(row["jobs"]), []).append(row)
    md.append("## `fastblocks put --jobs N` (durability always)\n")
    rows = []
    for j, lst in sorted(by.items()):
        ips = stat([num(x["images_per_second"]) for x in lst])
        sp = stat([num(x["speedup"]) for x in lst])
        put(f"cli.put_jobs.{j}.images_per_second", ips)
        put(f"cli.put_jobs.{j}.speedup", sp)
        rows.append([j, fmt(ips), ratio_fmt(sp)])
    table(["--jobs", "images/s", "vs --jobs 1"], rows)

# ------------------------------------------------------------------ memory
runs = runs_of("memory")
if runs:
    mem = [read_csv(r / "memory.csv") for r in runs]
    servers = []
    for rr in mem:
        for x in rr:
            if x["server"] not in servers:
                servers.append(x["server"])

    def col(server, k):
        return [num(next((x[k] for x in rr if x["server"] == server), None)) for rr in mem]

    md.append("## Memory (resident set of the server's processes)\n")
    rows, drows = [], []
    fb_after = col("fastblocks", "rss_after_reads_kb")
    for sv in servers:
        st = stat([None if v is None else v / 1024 for v in col(sv, "rss_start_kb")])
        up = stat([None if v is None else v / 1024 for v in col(sv, "rss_uploaded_kb")])
        af = stat([None if v is None else v / 1024 for v in col(sv, "rss_after_reads_kb")])
        pk = stat([None if v is None else v / 1024 for v in col(sv, "peak_kb")])
        r = stat([div(a, b) for a, b in zip(fb_after, col(sv, "rss_after_reads_kb"))])
        for k, v in (("start_MB", st), ("uploaded_MB", up), ("after_reads_MB", af),
                     ("peak_MB", pk), ("fastblocks_over_this", r)):
            put(f"memory.{sv}.{k}", v)
        rows.append([sv, fmt(st, unit=" MB"), fmt(up, unit=" MB"), fmt(af, unit=" MB"),
                     fmt(pk, unit=" MB"), "-" if sv == "fastblocks" else ratio_fmt(r)])
        drows.append([sv, *mm(af), pk["median"] if pk else None])
    table(["server", "at start", "after uploads", "after reads", "peak",
           "FastBlocks / this (after reads)"], rows)
    dat("memory", ["server", "rss", "rss_min", "rss_max", "peak"], drows)

# ------------------------------------------------------------------ output
(RESULTS / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
(RESULTS / "summary.md").write_text(
    "# bench/run-all summary\n\nMedian (min–max) over the runs; ratios are taken within a run, "
    "then the median over runs.\n\n" + "\n".join(md) + "\n")
print(f"wrote {RESULTS / 'summary.json'} and {RESULTS / 'summary.md'}")
