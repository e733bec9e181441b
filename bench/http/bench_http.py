#!/usr/bin/python3
"""HTTP benchmark of `fastblocks serve`, in one run, against two peers:

  * nginx (Debian, sendfile on, 2 workers) serving the same WebP files as
    static files -- the yardstick for reads;
  * the Python re-creation of the original FastBlocks (../shared/baseline:
    seed_app.py on uvicorn, README configuration) -- the baseline.

Scenarios: hot reads (cached), cold reads of plain records (cache off:
sendfile from the block file), encrypted reads (cache off: decrypt per
request), upload throughput at concurrency 1 and 4, and read latency during
an upload burst. Reads use wrk with the baseline's rotate.lua over every
stored image; uploads use the baseline's http_client.py (same client for
both servers).

    bench/http/bench_http.py [--build DIR] [--web DIR] [--duration 5s]
                             [--rounds 3] [--conns 16,64] [--quick]

Results: bench/results/http/reads.csv, uploads.csv, burst.csv and
summary.json (ratios), plus a table on stdout. wrk, clients and servers
share the machine's cores, as in the baseline's own figures.
"""

import argparse
import csv
import json
import os
import pathlib
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SHARED = pathlib.Path(os.environ.get("FB_SHARED_DIR", ROOT.parent / "shared"))
BASELINE = SHARED / "baseline"
PY = "/usr/bin/python3"
NGINX_PORT = 18091   # below 32768: never collides with outgoing loopback ports
SEED_PORT = 18001


def log(msg):
    print(msg, flush=True)


def wait_http(url, timeout=60):
    import urllib.request
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


class Proc:
    def __init__(self, argv, env=None, cwd=None, log_path=None, read_listen=False):
        self.log_path = log_path
        out = subprocess.PIPE if read_listen else subprocess.DEVNULL
        self.logf = open(log_path, "wb") if log_path else subprocess.DEVNULL
        self.p = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=self.logf)
        self.url = None
        if read_listen:
            line = self.p.stdout.readline().decode()
            m = re.match(r"fastblocks: listening on (\S+)", line)
            if not m:
                raise RuntimeError(f"server did not start: {line!r}")
            self.url = m.group(1)

    def pids(self):
        kids = subprocess.run(["pgrep", "-P", str(self.p.pid)], capture_output=True,
                              text=True).stdout.split()
        return [self.p.pid] + [int(k) for k in kids]

    def stop(self, sig=signal.SIGTERM):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        if self.p.stdout:
            self.p.stdout.close()
        if self.logf is not subprocess.DEVNULL:
            self.logf.close()
        return self.p.returncode


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except (FileNotFoundError, IndexError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def wait_idle(proc, timeout=30):
    """Until the server used under 5% of a core for half a second: uploads
    already received are still being converted after their clients go."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c0 = cpu_seconds(proc.pids())
        time.sleep(0.5)
        if cpu_seconds(proc.pids()) - c0 < 0.025:
            return


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def run_wrk(url, paths_file, conns, duration, threads=2):
    env = dict(os.environ, FB_PATHS=str(paths_file))
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}", "--timeout", "10s",
                          "--latency", "-s", str(BASELINE / "rotate.lua"), url],
                         capture_output=True, text=True, env=env).stdout

    def lat(pct):
        m = re.search(rf"{pct}%\s+([\d.]+)(\w+)", out)
        return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockerr = re.search(r"Socket errors: (.*)", out)
    tr = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    mbs = 0.0
    if tr:
        mbs = float(tr.group(1)) * {"B": 1e-6, "KB": 1.024e-3, "MB": 1.048576,
                                     "GB": 1073.741824}[tr.group(2)]
    return {"req_per_s": float(rps.group(1)) if rps else 0.0, "p50_ms": lat(50),
            "p99_ms": lat(99), "MB_per_s": mbs,
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sockerr.group(1) if sockerr else ""}


def upload_all(base, web, conc, paths_out=None):
    argv = [PY, str(BASELINE / "http_client.py"), "upload", base, str(web), str(conc)]
    if paths_out:
        argv += ["--paths", str(paths_out)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


class Bench:
    def __init__(self, args):
        self.args = args
        self.binary = pathlib.Path(args.build) / "fastblocks"
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="fb-bench-http-"))
        # nginx workers run as another user: they must be able to read www/.
        self.tmp.chmod(0o755)
        self.results = ROOT / "bench" / "results" / "http"
        self.results.mkdir(parents=True, exist_ok=True)
        self.reads, self.uploads, self.burst = [], [], []
        keyfile = self.tmp / "key"
        key = subprocess.run([str(self.binary), "keygen"], capture_output=True, text=True)
        if key.returncode != 0:
            key = subprocess.run([PY, "-c", "from cryptography.fernet import Fernet;"
                                  "print(Fernet.generate_key().decode())"],
                                 capture_output=True, text=True, check=True)
        keyfile.write_text(key.stdout.strip() + "\n")
        self.keyfile = keyfile

    # ---------------------------------------------------------------- servers
    def fastblocks(self, name, *flags):
        data = self.tmp / f"data-{name}"
        return Proc([str(self.binary), "serve", "--data", str(data), "--listen", "127.0.0.1:0",
                     "--quiet", *flags], log_path=self.tmp / f"{name}.log", read_listen=True)

    def seed(self, config):
        blocks = self.tmp / f"seed-blocks-{config}"
        shutil.rmtree(blocks, ignore_errors=True)
        blocks.mkdir()
        key = self.keyfile.read_text().strip() if config != "plain" else "none"
        env = dict(os.environ, FB_BLOCK_DIR=str(blocks), FB_KEY=key,
                   FB_COMPRESSION="0" if config == "plain" else "1", FB_CACHE="50",
                   FB_RESPONSE="plain" if config == "fixedresp" else "stream")
        p = Proc([PY, "-m", "uvicorn", "seed_app:app", "--host", "127.0.0.1", "--port",
                  str(SEED_PORT), "--workers", "1"], env=env, cwd=str(BASELINE),
                 log_path=self.tmp / f"seed-{config}.log")
        wait_http(f"http://127.0.0.1:{SEED_PORT}/docs")
        p.url = f"http://127.0.0.1:{SEED_PORT}"
        return p

    def nginx(self, www):
        n = self.tmp / "nginx"
        (n / "tmp").mkdir(parents=True, exist_ok=True)
        (n / "logs").mkdir(exist_ok=True)
        conf = n / "nginx.conf"
        conf.write_text(f"""worker_processes 2;
pid {n}/nginx.pid;
error_log {n}/error.log;
daemon off;
events {{ worker_connections 1024; }}
http {{
  sendfile on; tcp_nopush on; access_log off; keepalive_requests 1000000;
  types {{ image/webp webp; }}
  client_body_temp_path {n}/tmp; proxy_temp_path {n}/tmp; fastcgi_temp_path {n}/tmp;
  uwsgi_temp_path {n}/tmp; scgi_temp_path {n}/tmp;
  server {{ listen 127.0.0.1:{NGINX_PORT}; root {www}; }}
}}
""")
        p = Proc(["nginx", "-c", str(conf), "-p", str(n) + "/"], log_path=n / "stderr.log")
        p.url = f"http://127.0.0.1:{NGINX_PORT}"
        time.sleep(0.5)
        return p

    # -------------------------------------------------------------- scenarios
    def measure(self, proc, paths, conns):
        c0 = cpu_seconds(proc.pids())
        r = run_wrk(proc.url, paths, conns, self.args.duration)
        return {**r, "server_cpu_s": round(cpu_seconds(proc.pids()) - c0, 2)}

    def add_row(self, scenario, server, conns, runs):
        """One row per scenario: the median of its runs (all errors summed)."""
        row = {"scenario": scenario, "server": server, "conns": conns, "rounds": len(runs)}
        for k in ("req_per_s", "p50_ms", "p99_ms", "MB_per_s", "server_cpu_s"):
            row[k] = statistics.median(r[k] for r in runs)
        row["non2xx"] = sum(r["non2xx"] for r in runs)
        row["socket_errors"] = "; ".join(r["socket_errors"] for r in runs if r["socket_errors"])
        self.reads.append(row)
        log(f"  {scenario:14s} {server:22s} c={conns:<3} {row['req_per_s']:10.1f} req/s  "
            f"p50 {row['p50_ms']:8.3f} ms  p99 {row['p99_ms']:8.3f} ms  "
            f"non2xx={row['non2xx']} {row['socket_errors']}"
            + (f"  (median of {len(runs)}: "
               + ", ".join(f"{r['req_per_s']:.0f}" for r in runs) + ")" if len(runs) > 1 else ""))
        return row

    def read_row(self, scenario, server, proc, paths, conns):
        return self.add_row(scenario, server, conns, [self.measure(proc, paths, conns)])

    def read_rounds(self, targets, conns):
        """Runs wrk against every target in turn, --rounds times, starting
        each round one target later, so that a slow minute of the shared
        machine falls on all of them alike; the ratios between them are
        the figures to trust. targets: (scenario, server, proc, paths)."""
        runs = {t[:2]: [] for t in targets}
        for r in range(self.args.rounds):
            k = r % len(targets)
            for scenario, server, proc, paths in targets[k:] + targets[:k]:
                runs[(scenario, server)].append(self.measure(proc, paths, conns))
        for scenario, server, _, _ in targets:
            self.add_row(scenario, server, conns, runs[(scenario, server)])

    def run_uploads(self):
        log("uploads (POST /upload/, every photo of the web set, http_client.py)")
        for conc in (1, 4):
            fb = self.fastblocks(f"up{conc}")
            r = upload_all(fb.url, self.args.web, conc)
            assert fb.stop() == 0
            self.uploads.append({"server": "fastblocks", "conc": conc, **r})
            log(f"  fastblocks        conc={conc} {r['img_per_s']:7.2f} img/s  "
                f"p50 {r['lat_p50_ms']:8.1f} ms  errors={r['errors']}")
            seed = self.seed("readme")
            r = upload_all(seed.url, self.args.web, conc)
            seed.stop()
            self.uploads.append({"server": "seed-readme", "conc": conc, **r})
            log(f"  seed-readme       conc={conc} {r['img_per_s']:7.2f} img/s  "
                f"p50 {r['lat_p50_ms']:8.1f} ms  errors={r['errors']}")

    def run_reads(self):
        conns = [int(c) for c in self.args.conns.split(",")]
        log(f"reads (wrk, rotate.lua over every stored image; {self.args.rounds} interleaved "
            "rounds, median)")
        # One store per server: a data directory has one writer process.
        # The cold servers read copies of the hot ones' stores.
        hot = self.fastblocks("hot")
        paths = self.tmp / "paths.txt"
        upload_all(hot.url, self.args.web, 4, paths)
        enc_hot = self.fastblocks("enc", "--key-file", str(self.keyfile))
        enc_paths = self.tmp / "paths-enc.txt"
        upload_all(enc_hot.url, self.args.web, 4, enc_paths)
        www = self.tmp / "www"
        subprocess.run([PY, str(BASELINE / "http_client.py"), "fetch", hot.url, str(paths),
                        str(www)], check=True, capture_output=True)
        webp_paths = self.tmp / "paths-nginx.txt"
        webp_paths.write_text("".join(f"/{f.name}\n" for f in sorted(www.iterdir())))
        for name in ("hot", "enc"):
            shutil.copytree(self.tmp / f"data-{name}", self.tmp / f"data-{name}-cold",
                            ignore=shutil.ignore_patterns("fastblocks.lock"))
        cold = self.fastblocks("hot-cold", "--cache-bytes", "0")
        enc = self.fastblocks("enc-cold", "--key-file", str(self.keyfile), "--cache-bytes", "0")
        ng = self.nginx(www)
        targets = [("hot", "fastblocks", hot, paths), ("cold-plain", "fastblocks", cold, paths),
                   ("static", "nginx", ng, webp_paths),
                   ("cold-encrypted", "fastblocks", enc, enc_paths),
                   ("hot-encrypted", "fastblocks", enc_hot, enc_paths)]
        for c in conns:
            self.read_rounds(targets, c)
        ng.stop(signal.SIGQUIT)
        for p in (hot, cold, enc, enc_hot):
            assert p.stop() == 0
        # The baseline: the README configuration (Fernet + zlib, streaming
        # response), and the what-if with a plain Response.
        if not self.args.quick:
            for config in ("readme", "fixedresp"):
                seed = self.seed(config)
                seed_paths = self.tmp / f"paths-seed-{config}.txt"
                upload_all(seed.url, self.args.web, 4, seed_paths)
                self.read_row("seed", f"seed-{config}", seed, seed_paths, conns[0])
                seed.stop()

    def run_burst(self):
        log(f"read latency during an upload burst (hot reads, wrk -c16; {self.args.rounds} "
            "rounds of idle, then busy)")
        fb = self.fastblocks("burst")
        paths = self.tmp / "paths-burst.txt"
        upload_all(fb.url, self.args.web, 4, paths)
        idle, busy = [], []
        for _ in range(self.args.rounds):
            idle.append(self.measure(fb, paths, 16))
            # Keep 4 uploaders busy for the whole wrk run.
            upl = subprocess.Popen(["/bin/sh", "-c",
                                    f"while :; do {PY} {BASELINE / 'http_client.py'} upload "
                                    f"{fb.url} {self.args.web} 4 >/dev/null || exit; done"],
                                   start_new_session=True)
            time.sleep(1.0)
            busy.append(self.measure(fb, paths, 16))
            os.killpg(upl.pid, signal.SIGTERM)
            upl.wait()
            wait_idle(fb)  # the next idle window must not see this burst's tail
        assert fb.stop() == 0
        idle = self.add_row("burst-idle", "fastblocks", 16, idle)
        busy = self.add_row("burst-uploads", "fastblocks", 16, busy)
        self.burst.append({"idle_p99_ms": idle["p99_ms"], "busy_p99_ms": busy["p99_ms"],
                           "idle_req_per_s": idle["req_per_s"],
                           "busy_req_per_s": busy["req_per_s"],
                           "p99_ratio": busy["p99_ms"] / idle["p99_ms"]})

    # ----------------------------------------------------------------- output
    def write(self):
        def dump(name, rows):
            if not rows:
                return
            with open(self.results / name, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
                w.writeheader()
                w.writerows(rows)

        dump("reads.csv", self.reads)
        dump("uploads.csv", self.uploads)
        dump("burst.csv", self.burst)

        def rps(scenario, server, c):
            for r in self.reads:
                if r["scenario"] == scenario and r["server"] == server and r["conns"] == c:
                    return r["req_per_s"]
            return None

        summary = {}
        for c in [int(x) for x in self.args.conns.split(",")]:
            ng = rps("static", "nginx", c)
            if ng:
                for sc in ("hot", "cold-plain", "cold-encrypted", "hot-encrypted"):
                    v = rps(sc, "fastblocks", c)
                    if v:
                        summary[f"{sc}_vs_nginx_c{c}"] = round(v / ng, 3)
        for server in ("seed-readme", "seed-fixedresp"):
            c0 = int(self.args.conns.split(",")[0])
            v = rps("seed", server, c0)
            if v:
                summary[f"hot_vs_{server}_c{c0}"] = round(rps("hot", "fastblocks", c0) / v, 1)
        for conc in (1, 4):
            fb = [u for u in self.uploads if u["server"] == "fastblocks" and u["conc"] == conc]
            sd = [u for u in self.uploads if u["server"] == "seed-readme" and u["conc"] == conc]
            if fb and sd:
                summary[f"upload_vs_seed_conc{conc}"] = round(
                    fb[0]["img_per_s"] / sd[0]["img_per_s"], 2)
        if self.burst:
            summary["burst_read_p99_ratio"] = round(self.burst[0]["p99_ratio"], 2)
        summary["web_images"] = len([f for f in pathlib.Path(self.args.web).iterdir()])
        summary["duration"] = self.args.duration
        (self.results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        log("summary (ratios, same run): " + json.dumps(summary, indent=2))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--web", default=os.environ.get("FB_BENCH_WEB", ""))
    ap.add_argument("--duration", default="5s", help="of each wrk run")
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved rounds of the read scenarios (median reported)")
    ap.add_argument("--conns", default="16,64")
    ap.add_argument("--quick", action="store_true", help="skip the slow seed read runs")
    ap.add_argument("--only", default="uploads,reads,burst")
    args = ap.parse_args()
    if not args.web:
        for cand in ("/tmp/fbcorpus-image/web", "/tmp/fbcorpus/web",
                     str(pathlib.Path(args.build) / "corpus" / "web")):
            if pathlib.Path(cand).is_dir():
                args.web = cand
                break
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            sys.exit(f"bench_http: {tool} is not installed (make deps-bench)")
    b = Bench(args)
    log(f"fastblocks {b.binary}, web set {args.web}, wrk {args.duration}, tmp {b.tmp}")
    try:
        only = args.only.split(",")
        if "uploads" in only:
            b.run_uploads()
        if "reads" in only:
            b.run_reads()
        if "burst" in only:
            b.run_burst()
    finally:
        b.write()
        shutil.rmtree(b.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
