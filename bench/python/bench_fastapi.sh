#!/usr/bin/env bash
# FastAPI reads with wrk: the re-created original app against FastBlocks, in one run.
#
#   bench/python/bench_fastapi.sh [WEB_DIR]      (default $FB_CORPUS_DIR/web)
#   env: BUILD (build dir, default build), WRK_D (10s), CONNS ("16 64"), RUNS (3)
#
# Four apps, each one uvicorn worker on 127.0.0.1, README configuration (compression on, a
# Fernet key, cache_size=50), the same images uploaded through POST /upload/:
#   seed        ../shared/baseline/seed_app.py: the original (StreamingResponse over BytesIO)
#   seed-plain  the same with Response(content=...): the what-if that fixes only the Python side
#   fb-readme   examples/fastapi_app.py: the README app verbatim (still StreamingResponse)
#   fb-router   bench/python/router_app.py: fastblocks.fastapi's router (Response, ETag)
# Prints req/s and latency per app and connection count and the ratio against `seed`; writes
# bench/results/python/fastapi.csv.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); TOP=$(cd "$HERE/../.." && pwd)
SHARED=${FB_SHARED_DIR:-$TOP/../shared}; BASE=$SHARED/baseline
BUILD=${BUILD:-$TOP/build}; WEB=${1:-${FB_CORPUS_DIR:-$BUILD/corpus}/web}
PY=/usr/bin/python3; WRK_D=${WRK_D:-10s}; CONNS=${CONNS:-16 64}; RUNS=${RUNS:-3}
OUT=$TOP/bench/results/python; mkdir -p "$OUT"; CSV=$OUT/fastapi.csv
W=$(mktemp -d /tmp/fbpybench.XXXXXX); PORT=18111; PID=""
KEY=$($PY -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$W"' EXIT
[ -d "$WEB" ] || { echo "no image dir $WEB"; exit 1; }
command -v wrk >/dev/null || { echo "wrk not installed (apt install wrk)"; exit 1; }

start() { # $1 = label
  rm -rf "$W/data"; mkdir -p "$W/data"
  case $1 in
  seed | seed-plain)
    local resp=stream; [ "$1" = seed-plain ] && resp=plain
    ( cd "$BASE" && FB_BLOCK_DIR=$W/data FB_KEY=$KEY FB_COMPRESSION=1 FB_CACHE=50 FB_RESPONSE=$resp \
        exec $PY -m uvicorn seed_app:app --host 127.0.0.1 --port $PORT --log-level warning ) &
    ;;
  fb-readme)
    ( cd "$W/data" && FASTBLOCKS_KEY=$KEY PYTHONPATH=$BUILD/python \
        exec $PY -m uvicorn fastapi_app:app --app-dir "$TOP/examples" --host 127.0.0.1 \
        --port $PORT --log-level warning ) &
    ;;
  fb-router)
    ( cd "$W/data" && FASTBLOCKS_DATA=$W/data/blocks FASTBLOCKS_KEY=$KEY FASTBLOCKS_COMPRESSION=1 \
        PYTHONPATH=$BUILD/python exec $PY -m uvicorn router_app:app --app-dir "$HERE" \
        --host 127.0.0.1 --port $PORT --log-level warning ) &
    ;;
  esac
  PID=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/docs" && return; sleep 0.2; done
  echo "$1 did not start"; exit 1
}
stop() { kill $PID; wait $PID 2>/dev/null || true; PID=""; }

echo "app,conns,run,req_per_s,p50_ms,p99_ms,non2xx" > "$CSV"
declare -A BEST
for app in seed seed-plain fb-readme fb-router; do
  start $app
  $PY "$BASE/http_client.py" upload "http://127.0.0.1:$PORT" "$WEB" 4 --paths "$W/paths.txt" >/dev/null
  # One pass to warm caches the same way for everybody.
  $PY "$BASE/http_client.py" fetch "http://127.0.0.1:$PORT" "$W/paths.txt" "$W/bodies" >/dev/null
  for c in $CONNS; do
    for r in $(seq $RUNS); do
      FB_PATHS=$W/paths.txt wrk -t2 -c$c -d$WRK_D --timeout 10s --latency -s "$BASE/rotate.lua" \
        "http://127.0.0.1:$PORT" > "$W/wrk.txt" 2>&1
      line=$($PY - "$app" "$c" "$r" "$W/wrk.txt" <<'PYEOF'
import re, sys
app, c, r, path = sys.argv[1:5]
txt = open(path).read()
def ms(v, u):
    return float(v) * {"us": 1e-3, "ms": 1, "s": 1e3, "m": 6e4}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", txt).group(1))
p50 = ms(*re.search(r"50%\s+([\d.]+)(\w+)", txt).groups())
p99 = ms(*re.search(r"99%\s+([\d.]+)(\w+)", txt).groups())
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", txt)
print(f"{app},{c},{r},{rps:.1f},{p50:.2f},{p99:.2f},{bad.group(1) if bad else 0}")
PYEOF
)
      echo "$line" >> "$CSV"; echo "$line"
    done
  done
  stop
done
$PY - "$CSV" <<'PYEOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
med = {}
for r in rows:
    med.setdefault((r["app"], r["conns"]), []).append(float(r["req_per_s"]))
med = {k: statistics.median(v) for k, v in med.items()}
print("\nmedian req/s and ratio against the original (seed) at the same connection count:")
for (app, c), v in sorted(med.items(), key=lambda kv: (int(kv[0][1]), kv[0][0])):
    print(f"  {app:11s} c={c:>3}  {v:9.1f} req/s  {v / med[('seed', c)]:7.1f}x")
PYEOF
echo "wrote $CSV"
