#!/usr/bin/python3
"""In-process benchmark of the Python package against the re-created original, in one run.

    PYTHONPATH=build/python /usr/bin/python3 bench/python/bench_inprocess.py [IMAGE_DIR]

IMAGE_DIR defaults to $FB_CORPUS_DIR/web (photos of 1-2 MP, typical uploads). Both managers
use the seed README's configuration (compression on, a Fernet key, cache_size=50) in fresh
temporary directories. Measures, for each:

  * save_image: images/s, one at a time (await in a loop) and 4 at a time (asyncio.gather);
  * read_image hot: reads/s of a hot set of 32 images read before (cached by both);
  * read_image cold (FastBlocks with its cache off: every read decrypts from the block file);
  * event-loop stall: the worst lateness of a 1 ms ticker while save_image runs.

Prints a table and writes bench/results/python/inprocess.csv and .json. Figures are ratios
against the original measured here, in the same run, on the same images.
"""

import asyncio
import csv
import glob
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
SHARED = os.environ.get("FB_SHARED_DIR", os.path.join(TOP, "..", "shared"))
sys.path.insert(0, os.path.join(SHARED, "baseline"))

from cryptography.fernet import Fernet  # noqa: E402

import seed_blockmanager  # noqa: E402
from fastblocks import BlockManager  # noqa: E402

RESULTS = os.path.join(TOP, "bench", "results", "python")
HOT_READS = int(os.environ.get("HOT_READS", "20000"))
RUNS = int(os.environ.get("RUNS", "3"))
HOT_SET = 32


def load_images(d):
    files = sorted(f for f in glob.glob(os.path.join(d, "*")) if os.path.isfile(f))
    if not files:
        sys.exit(f"no images in {d}")
    out = []
    for f in files:
        with open(f, "rb") as fh:
            out.append(fh.read())
    return out


async def ticker_stall(work, interval=0.001):
    worst, done = 0.0, False

    async def tick():
        nonlocal worst
        while not done:
            t = time.perf_counter()
            await asyncio.sleep(interval)
            worst = max(worst, time.perf_counter() - t - interval)

    task = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    await work()
    done = True
    await task
    return worst


async def bench_manager(name, make, images, cold_make=None):
    res = {"impl": name}
    tmp = tempfile.mkdtemp(prefix=f"fbbench-{name}-")
    try:
        m = make(os.path.join(tmp, "a"))
        t = time.perf_counter()
        metas = [await m.save_image(img) for img in images]
        res["save_seq_img_s"] = len(images) / (time.perf_counter() - t)

        m2 = make(os.path.join(tmp, "b"))
        sem = asyncio.Semaphore(4)

        async def one(img):
            async with sem:
                return await m2.save_image(img)

        t = time.perf_counter()
        await asyncio.gather(*(one(img) for img in images))
        res["save_conc4_img_s"] = len(images) / (time.perf_counter() - t)

        # Hot reads: a hot set that both caches hold (the README configuration caches 50
        # images here and 50 whole blocks in the original), read once to warm the caches,
        # then round-robin.
        addrs = [(x["block"], x["offset"], x["size"]) for x in metas]
        hot = addrs[:HOT_SET]
        for a in hot:
            await m.read_image(*a)
        rates = []
        for _ in range(RUNS):
            t = time.perf_counter()
            for i in range(HOT_READS):
                await m.read_image(*hot[i % len(hot)])
            rates.append(HOT_READS / (time.perf_counter() - t))
        res["read_hot_per_s"] = statistics.median(rates)

        async def saves():
            for img in images[:4]:
                await m.save_image(img)

        res["stall_ms"] = 1e3 * await ticker_stall(saves)
        if hasattr(m, "close"):
            m.close()

        if cold_make is not None:
            c = cold_make(os.path.join(tmp, "a"))
            n = max(len(addrs) * 20, 2000)
            t = time.perf_counter()
            for i in range(n):
                await c.read_image(*addrs[i % len(addrs)])
            res["read_cold_per_s"] = n / (time.perf_counter() - t)
            c.close()
        if hasattr(m2, "close"):
            m2.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res


async def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.environ.get("FB_CORPUS_DIR", ""),
                                                           "web")
    images = load_images(d)
    key = Fernet.generate_key()
    print(f"{len(images)} images from {d}, {sum(map(len, images)) / 1e6:.1f} MB; "
          f"hot reads: {HOT_READS} x {RUNS} runs (median)")

    def seed(path):
        return seed_blockmanager.BlockManager(block_dir=path, max_block_size=10 * 1024 * 1024,
                                              compression=True, encryption_key=key, cache_size=50)

    def fast(path):
        return BlockManager(path, max_block_size=10 * 1024 * 1024, compression=True,
                            encryption_key=key, cache_size=50)

    def fast_cold(path):
        return BlockManager(path, compression=True, encryption_key=key, cache_size=0)

    # What the machine itself allows: the same ticker while pool threads run GIL-free C code
    # (hashing) for a comparable time. Loop stalls beyond this are the package's own.
    import hashlib

    blob = b"\0" * (64 << 20)
    loop = asyncio.get_running_loop()

    async def hashing():
        await asyncio.gather(*(loop.run_in_executor(None, hashlib.sha256, blob)
                               for _ in range(4)))

    floor_ms = 1e3 * await ticker_stall(hashing)
    print(f"loop stall floor (4 GIL-free hashing threads): {floor_ms:.2f} ms")

    # And with no work at all: the jitter of the timers and the scheduler alone.
    async def idle():
        await asyncio.sleep(2)

    idle_ms = 1e3 * await ticker_stall(idle)
    print(f"loop stall with no work at all (2 s): {idle_ms:.2f} ms")
    rows = [await bench_manager("original", seed, images),
            await bench_manager("fastblocks", fast, images, fast_cold)]
    base, fb = rows
    ratios = {k: fb[k] / base[k] for k in ("save_seq_img_s", "save_conc4_img_s",
                                           "read_hot_per_s") if base.get(k)}
    print(f"{'':12s} {'save 1-by-1':>12s} {'save 4 conc':>12s} {'hot read/s':>12s} "
          f"{'cold read/s':>12s} {'loop stall':>11s}")
    for r in rows:
        cold = f"{r['read_cold_per_s']:12.0f}" if "read_cold_per_s" in r else f"{'-':>12s}"
        print(f"{r['impl']:12s} {r['save_seq_img_s']:10.2f}/s {r['save_conc4_img_s']:10.2f}/s "
              f"{r['read_hot_per_s']:12.0f} {cold} {r['stall_ms']:9.2f}ms")
    print("ratios fastblocks/original: " +
          ", ".join(f"{k} {v:.1f}x" for k, v in ratios.items()) +
          f"; cold read vs original hot read {fb['read_cold_per_s'] / base['read_hot_per_s']:.1f}x")
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "inprocess.csv"), "w", newline="") as f:
        keys = sorted({k for r in rows for k in r})
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    with open(os.path.join(RESULTS, "inprocess.json"), "w") as f:
        json.dump({"images": len(images), "dir": d, "rows": rows, "ratios": ratios,
                   "stall_floor_ms": floor_ms, "stall_idle_ms": idle_ms}, f, indent=1)
    print(f"wrote {RESULTS}/inprocess.csv and .json")


if __name__ == "__main__":
    asyncio.run(main())
