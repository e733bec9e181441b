#!/usr/bin/python3
"""Soak test: mixed traffic against `fastblocks serve` on 127.0.0.1 (issue 10).

Starts the real server on a fresh store, runs SOAK_CLIENTS keep-alive
clients for SOAK_SECONDS (default 600) that upload, read (plain, HEAD,
Range, If-None-Match) and delete images, and samples the server's RSS and
open file descriptors from /proc every SOAK_SAMPLE seconds. Every response
is checked: status, and for reads the exact bytes acknowledged at upload.
The live set is bounded (SOAK_MAX_LIVE), so the store size levels off and
RSS growth means a leak, not data.

Passes (exit 0) when: zero errors; RSS at the end within 10% (and at most
16 MiB) of RSS after warm-up (the first 20% of the run); the fd count at
the end, block files aside (the server keeps one descriptor per
block file), no higher than after warm-up; the server exits 0 on SIGTERM; and
`fastblocks verify` is clean afterwards.

Writes bench/results/soak/samples.csv (one row per sample) and
bench/results/soak/summary.json, and prints the summary.

    SOAK_SECONDS=60 bench/soak/soak.py [BUILD_DIR]
"""

import hashlib
import http.client
import json
import os
import pathlib
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("FB_BUILD_DIR",
                                                                           ROOT / "build"))
BINARY = BUILD / "fastblocks"
OUT = pathlib.Path(os.environ.get("SOAK_OUT", ROOT / "bench" / "results" / "soak"))
SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
CLIENTS = int(os.environ.get("SOAK_CLIENTS", "4"))
SAMPLE = float(os.environ.get("SOAK_SAMPLE", "5"))
MAX_LIVE = int(os.environ.get("SOAK_MAX_LIVE", "400"))
WARMUP = 0.2  # fraction of the run before the RSS and fd baseline is taken


def source_images():
    d = ROOT / "tests" / "data" / "images"
    files = sorted(p for p in d.iterdir() if p.suffix in (".jpg", ".png", ".gif", ".webp"))
    if not files:
        sys.exit(f"no images in {d}")
    return [p.read_bytes() for p in files]


def multipart(data):
    b = "soak" + uuid.uuid4().hex
    body = (f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + \
        f"\r\n--{b}--\r\n".encode()
    return body, f"multipart/form-data; boundary={b}"


class Shared:
    def __init__(self):
        self.lock = threading.Lock()
        self.live = {}  # id -> sha256 of the WebP served
        self.requests = 0
        self.errors = []
        self.counts = {}

    def error(self, what):
        with self.lock:
            self.errors.append(what)
            if len(self.errors) <= 20:
                print("error:", what, file=sys.stderr)

    def count(self, kind):
        with self.lock:
            self.requests += 1
            self.counts[kind] = self.counts.get(kind, 0) + 1


def client(port, images, shared, stop, seed):
    rnd = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def req(method, path, body=None, headers=None):
        nonlocal conn
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            shared.error(f"{method} {path}: {type(e).__name__}: {e}")
            return None, {}, b""

    while not stop.is_set():
        with shared.lock:
            ids = list(shared.live)
        roll = rnd.random()
        if not ids or (roll < 0.2 and len(ids) < MAX_LIVE):
            body, ctype = multipart(rnd.choice(images))
            st, _, data = req("POST", "/upload/", body, {"Content-Type": ctype})
            shared.count("upload")
            if st != 200:
                shared.error(f"upload: {st} {data[:200]!r}")
                continue
            ident = json.loads(data)["metadata"]["id"]
            st, _, img = req("GET", f"/images/{ident}")
            shared.count("get")
            if st != 200 or img[:4] != b"RIFF":
                shared.error(f"GET new {ident}: {st}")
                continue
            with shared.lock:
                shared.live[ident] = hashlib.sha256(img).hexdigest()
        elif roll < 0.9 or len(ids) < 20:
            ident = rnd.choice(ids)
            with shared.lock:
                want = shared.live.get(ident)
            kind = rnd.choice(("get", "get", "get", "head", "range", "etag"))
            headers = {}
            if kind == "range":
                headers["Range"] = "bytes=0-99"
            st, h, img = req("HEAD" if kind == "head" else "GET", f"/images/{ident}",
                             headers=headers)
            shared.count(kind)
            with shared.lock:
                still = ident in shared.live
            if not still:
                continue  # deleted by another client meanwhile: any answer is fine
            if kind == "get" and (st != 200 or hashlib.sha256(img).hexdigest() != want):
                shared.error(f"GET {ident}: {st}, {len(img)} bytes, content differs")
            elif kind == "head" and (st != 200 or img):
                shared.error(f"HEAD {ident}: {st}")
            elif kind == "range" and (st != 206 or len(img) != 100):
                shared.error(f"Range {ident}: {st}, {len(img)} bytes")
            elif kind == "etag" and st == 200 and h.get("etag"):
                st2, _, _ = req("GET", f"/images/{ident}", headers={"If-None-Match": h["etag"]})
                shared.count("etag")
                if st2 != 304 and ident in shared.live:
                    shared.error(f"If-None-Match {ident}: {st2}")
        else:
            ident = rnd.choice(ids)
            with shared.lock:
                if shared.live.pop(ident, None) is None:
                    continue
            st, _, data = req("DELETE", f"/images/{ident}")
            shared.count("delete")
            if st != 200:
                shared.error(f"DELETE {ident}: {st} {data[:200]!r}")
                continue
            st, _, _ = req("GET", f"/images/{ident}")
            shared.count("get")
            if st != 404:
                shared.error(f"GET deleted {ident}: {st}")
    conn.close()


def block_files(data_dir):
    try:
        return sum(1 for p in (data_dir / "blocks").iterdir() if p.suffix == ".fbk")
    except FileNotFoundError:
        return 0


def proc_sample(pid):
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds


def main():
    if not BINARY.exists():
        sys.exit(f"{BINARY} is not built")
    images = source_images()
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="fbsoak-"))
    data_dir = tmp / "data"
    log = open(tmp / "server.log", "wb")
    srv = subprocess.Popen([str(BINARY), "serve", "--data", str(data_dir), "--listen",
                            "127.0.0.1:0", "--quiet", "--max-block-size", "16M",
                            "--cache-bytes", "16M"],
                           stdout=subprocess.PIPE, stderr=log)
    line = b""
    deadline = time.monotonic() + 30
    while b"\n" not in line and time.monotonic() < deadline:
        if select.select([srv.stdout], [], [], 0.2)[0]:
            chunk = os.read(srv.stdout.fileno(), 4096)
            if not chunk:
                break
            line += chunk
    m = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", line)
    if not m:
        srv.kill()
        sys.exit(f"server did not start: {line!r}")
    port = int(m.group(1))

    shared = Shared()
    stop = threading.Event()
    threads = [threading.Thread(target=client, args=(port, images, shared, stop, i))
               for i in range(CLIENTS)]
    start = time.monotonic()
    for t in threads:
        t.start()
    samples = []
    while True:
        now = time.monotonic() - start
        rss, fds = proc_sample(srv.pid)
        with shared.lock:
            samples.append((round(now, 1), rss, fds, block_files(data_dir), shared.requests,
                            len(shared.errors), len(shared.live)))
        if now >= SECONDS:
            break
        time.sleep(min(SAMPLE, max(0.1, SECONDS - now)))
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    final_rss, final_fds = proc_sample(srv.pid)
    srv.send_signal(signal.SIGTERM)
    try:
        exit_code = srv.wait(timeout=60)
    except subprocess.TimeoutExpired:
        srv.kill()
        exit_code = "timeout"
    log.close()
    verify = subprocess.run([str(BINARY), "verify", "--data", str(data_dir), "--no-progress"],
                            capture_output=True)

    with open(OUT / "samples.csv", "w") as f:
        f.write("seconds,rss_kib,fds,block_files,requests,errors,live_images\n")
        for s in samples:
            f.write(",".join(map(str, s)) + "\n")
    warm = next((s for s in samples if s[0] >= WARMUP * SECONDS), samples[-1])
    last = samples[-1]  # the clients' connections are still open here, as at warm-up
    rss_growth = final_rss - warm[1]
    # The server keeps one descriptor per block file by design; anything
    # else growing is a leak.
    other_fds_warm, other_fds_last = warm[2] - warm[3], last[2] - last[3]
    summary = {
        "seconds": round(elapsed, 1),
        "clients": CLIENTS,
        "requests": shared.requests,
        "requests_per_second": round(shared.requests / elapsed, 1),
        "by_kind": shared.counts,
        "errors": len(shared.errors),
        "first_errors": shared.errors[:10],
        "rss_kib_after_warmup": warm[1],
        "rss_kib_end": final_rss,
        "rss_kib_max": max(s[1] for s in samples),
        "rss_growth_ratio": round(final_rss / warm[1], 3) if warm[1] else None,
        "fds_after_warmup": warm[2],
        "fds_end": final_fds,
        "fds_max": max(s[2] for s in samples),
        "block_files_after_warmup": warm[3],
        "block_files_end": last[3],
        "non_block_fds_after_warmup": other_fds_warm,
        "non_block_fds_end": other_fds_last,
        "live_images_end": len(shared.live),
        "server_exit": exit_code,
        "verify_exit": verify.returncode,
    }
    checks = {
        "zero errors": summary["errors"] == 0,
        "rss flat after warm-up (<= +10% and <= +16 MiB)":
            final_rss <= warm[1] * 1.10 and rss_growth <= 16 * 1024,
        "no fd leak (descriptors other than block files)": other_fds_last <= other_fds_warm,
        "server exit 0 on SIGTERM": exit_code == 0,
        "verify clean": verify.returncode == 0,
    }
    summary["checks"] = checks
    summary["passed"] = all(checks.values())
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    if summary["passed"]:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"FAILED; store and server log kept in {tmp}", file=sys.stderr)
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
