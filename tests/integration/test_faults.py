"""Storage faults against the real `fastblocks` binary (issue 10).

Two kinds of fault:

* Injected ones, through the fbfault LD_PRELOAD shim
  ($FB_BUILD_DIR/tests/fault/libfbfault.so, see tests/fault/fbfault.c): the
  Nth write, fsync/fdatasync, rename, fallocate or read on the store's files
  fails with EIO or ENOSPC, or a write is torn. Sweeps try N = 1, 2, ...
  until the command runs through without reaching its Nth call, so every
  call site of a put, rm, compact and get is hit once.
* A real full disk: a small tmpfs mounted over the data directory (root
  only; skipped with the reason otherwise).

After every fault, without the shim: the command reported the error (exit 1
and a message naming it; HTTP 503), `fastblocks verify` is clean, every
acknowledged image reads back byte-identical, nothing refused or deleted is
listed, and a restart (a fresh process) recovers.

Sanitizer builds do not build the shim (ASan/TSan must come first in a
process): the shim cases skip there, the full-disk cases still run.
"""

import os
import pathlib
import random
import re
import shutil
import struct
import subprocess
import tempfile
import zlib

import pytest

from conftest import BINARY, BUILD_DIR, Server

SOURCE_DIR = pathlib.Path(os.environ.get("FB_SOURCE_DIR",
                                         pathlib.Path(__file__).resolve().parents[2]))
IMAGES = SOURCE_DIR / "tests" / "data" / "images"
SHIM = BUILD_DIR / "tests" / "fault" / "libfbfault.so"
MAX_SWEEP = 200

ERROR_TEXT = {"EIO": "I/O error", "ENOSPC": "no space left on device"}


def need_binary():
    if not BINARY.exists():
        pytest.skip(f"{BINARY} is not built")


def need_shim():
    need_binary()
    if not SHIM.exists():
        pytest.skip(f"{SHIM} is not built (sanitizer builds skip the LD_PRELOAD shim)")


def fault_env(log, path, ops, nth=1, times=1, errno="EIO", mode="fail"):
    return {"LD_PRELOAD": str(SHIM), "FBFAULT_OPS": ops, "FBFAULT_NTH": str(nth),
            "FBFAULT_TIMES": str(times), "FBFAULT_ERRNO": errno, "FBFAULT_MODE": mode,
            "FBFAULT_PATH": str(path), "FBFAULT_LOG": str(log)}


def injected_count(log):
    """Faults the shim injected, from its exit summary (0 if none)."""
    try:
        text = pathlib.Path(log).read_text()
    except FileNotFoundError:
        return 0
    m = re.findall(r"summary matched=(\d+) injected=(\d+)", text)
    if m:
        return int(m[-1][1])
    return text.count("fbfault: ") - text.count("summary")


class Store:
    """A data directory driven through the CLI, with what it must contain."""

    def __init__(self, root, args=()):
        self.dir = pathlib.Path(root) / "data"
        self.tmp = pathlib.Path(root)
        self.args = list(args)
        self.acked = {}      # id -> WebP bytes read back right after the put
        self.deleted = set()

    def cli(self, *argv, env=None, timeout=120):
        e = dict(os.environ)
        e.update(env or {})
        cmd = [str(BINARY), argv[0], "--data", str(self.dir), *self.args, *argv[1:]]
        return subprocess.run(cmd, capture_output=True, env=e, timeout=timeout)

    def get(self, ident):
        r = self.cli("get", ident, "-o", "-")
        assert r.returncode == 0, f"get {ident}: {r.stderr.decode()}"
        return r.stdout

    def put(self, *files, env=None):
        r = self.cli("put", "--no-progress", "-j", "1", *map(str, files), env=env)
        ids = [line.split()[0] for line in r.stdout.decode().splitlines() if line.strip()]
        for ident in ids:
            self.acked[ident] = None
        return r, ids

    def fill_bytes(self):
        for ident in self.acked:
            if self.acked[ident] is None:
                self.acked[ident] = self.get(ident)

    def listed(self):
        r = self.cli("ls")
        assert r.returncode == 0, r.stderr.decode()
        return {line.split()[0] for line in r.stdout.decode().splitlines() if line.strip()}

    def restart(self):
        """Opens the store for writing once, as a restarted server would:
        recovery cuts a torn tail of the active block and rebuilds a missing
        index file. (A threshold of 1 compacts only wholly dead blocks.)"""
        r = self.cli("compact", "--threshold", "1", "--no-progress")
        assert r.returncode == 0, f"the store does not reopen: {r.stderr.decode()}"

    def check(self, context=""):
        """After a restart: verify clean; exactly the acknowledged images,
        byte-identical; nothing deleted comes back."""
        self.restart()
        r = self.cli("verify", "--no-progress")
        assert r.returncode == 0, (f"{context}: verify is not clean:\n{r.stdout.decode()}"
                                   f"{r.stderr.decode()}")
        live = set(self.acked) - self.deleted
        listed = self.listed()
        assert listed == live, (f"{context}: listed {len(listed)} images, want {len(live)}; "
                                f"extra {sorted(listed - live)[:3]}, "
                                f"missing {sorted(live - listed)[:3]}")
        # verify has checked every record's CRC; compare the bytes of up to
        # 12 images spread over the store (all of them in small stores).
        ordered = sorted(live)
        step = max(1, len(ordered) // 12)
        for ident in ordered[::step]:
            data = self.get(ident)
            if self.acked[ident] is None:
                self.acked[ident] = data
            assert data == self.acked[ident], f"{context}: {ident} changed"
        for ident in self.deleted:
            r = self.cli("get", ident, "-o", "-")
            assert r.returncode != 0, f"{context}: deleted {ident} came back"


@pytest.fixture
def fast_tmp(tmp_path):
    """A scratch directory on tmpfs when there is one: the sweeps run
    hundreds of commands with fsync on, and the shim sees every fsync call
    whether or not the file system makes it slow."""
    shm = pathlib.Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    d = pathlib.Path(tempfile.mkdtemp(prefix="fbfaults-", dir=shm))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def store(fast_tmp):
    need_shim()
    s = Store(fast_tmp)
    r, ids = s.put(IMAGES / "photo.jpg", IMAGES / "colour-srgb.jpg", IMAGES / "orient-6.jpg")
    assert r.returncode == 0 and len(ids) == 3, r.stderr.decode()
    s.fill_bytes()
    return s


def sweep(store, run, ops, errno="EIO", mode="fail", times=1, path=None):
    """Runs run(env) with the Nth matching call faulted, N = 1, 2, ...

    run(env) performs one command and returns its CompletedProcess; after
    each attempt the store is checked. Returns how many attempts were
    faulted (at least one, or the sweep tested nothing).
    """
    faulted = 0
    for n in range(1, MAX_SWEEP + 1):
        log = store.tmp / f"fault-{ops}-{n}.log"
        env = fault_env(log, path or store.dir, ops, nth=n, times=times, errno=errno, mode=mode)
        r = run(env)
        hit = injected_count(log)
        err = r.stderr.decode(errors="replace")
        ctx = f"{ops} {errno} {mode} N={n}"
        assert r.returncode in (0, 1), f"{ctx}: exit {r.returncode}: {err}"
        if hit == 0:
            assert r.returncode == 0, f"{ctx}: failed without a fault: {err}"
            store.check(ctx + " (no fault)")
            assert faulted > 0 or ops == "rename", f"{ops}: the command made no such call"
            return faulted
        faulted += 1
        if r.returncode != 0 and mode != "short":
            want = ERROR_TEXT[errno]
            assert want in err, f"{ctx}: the error does not say '{want}': {err}"
        store.check(ctx)
    raise AssertionError(f"{ops}: still faulting after {MAX_SWEEP} attempts")


@pytest.mark.parametrize("ops,errno,mode", [
    ("write", "EIO", "fail"),
    ("write", "ENOSPC", "torn"),
    ("write", "EIO", "short"),
    ("sync", "EIO", "fail"),
    ("alloc", "ENOSPC", "fail"),
    ("rename", "EIO", "fail"),
])
def test_put_under_faults(store, ops, errno, mode):
    """A put hit by a fault fails with the reason, stores nothing, loses nothing."""
    src = IMAGES / "orient-3.jpg"

    def run(env):
        r, ids = store.put(src, env=env)
        if r.returncode != 0:
            assert ids == [], f"failed put printed ids {ids}"
        return r

    # Torn and short writes go to block files only: the small files (lock,
    # marker) have their own, known-failing case below.
    path = store.dir / "blocks" if mode != "fail" else None
    faulted = sweep(store, run, ops, errno=errno, mode=mode,
                    times=0 if mode != "fail" else 1, path=path)
    if ops != "rename":  # a put alone renames nothing; the sweep then ends at once
        assert faulted >= 1


def test_short_writes_on_small_files(tmp_path):
    """A short write is not an error: the rest must be written (POSIX allows it)."""
    need_shim()
    s = Store(tmp_path)
    env = fault_env(tmp_path / "short.log", s.dir, "write", times=0, mode="short")
    r, ids = s.put(IMAGES / "photo.jpg", env=env)
    assert r.returncode == 0 and len(ids) == 1, r.stderr.decode()
    s.check("after short writes")


def test_put_on_a_dead_disk_then_recovery(store):
    """Every write fails: each put says so, and a fresh process writes again."""
    env = fault_env(store.tmp / "dead.log", store.dir, "write,sync,alloc", times=0,
                    errno="ENOSPC")
    for name in ("orient-2.jpg", "orient-4.jpg"):
        r, ids = store.put(IMAGES / name, env=env)
        assert r.returncode == 1 and ids == []
        assert "no space left on device" in r.stderr.decode()
    assert injected_count(store.tmp / "dead.log") > 0
    store.check("after the dead disk")
    r, ids = store.put(IMAGES / "orient-2.jpg")
    assert r.returncode == 0 and len(ids) == 1, r.stderr.decode()
    store.check("after recovery")


@pytest.mark.parametrize("ops", ["write", "sync"])
def test_rm_under_faults(store, ops):
    """A delete hit by a fault either happened or did not, and stays so after restart."""
    def run(env):
        victim = sorted(set(store.acked) - store.deleted)[0]
        r = store.cli("rm", victim, env=env)
        gone = store.cli("get", victim, "-o", "-").returncode != 0
        if r.returncode == 0:
            assert gone, "acknowledged delete still serves the image"
        if gone:
            store.deleted.add(victim)
        return r

    sweep(store, run, ops)


@pytest.mark.parametrize("ops", ["write", "sync", "rename", "read"])
def test_compact_under_faults(fast_tmp, ops):
    """Compaction hit by a fault keeps every live image and resurrects nothing."""
    need_shim()
    s = Store(fast_tmp, args=["--max-block-size", "16K"])
    files = sorted(IMAGES.glob("orient-*.jpg")) + [IMAGES / "photo.jpg", IMAGES / "gps.jpg"]
    r, ids = s.put(*files)
    assert r.returncode == 0 and len(ids) == len(files), r.stderr.decode()
    s.fill_bytes()
    for ident in ids[:len(ids) // 2:2]:
        assert s.cli("rm", ident).returncode == 0
        s.deleted.add(ident)
    s.check("before compaction")

    def run(env):
        return s.cli("compact", "--threshold", "0", "--no-progress", env=env)

    sweep(s, run, ops)


def test_get_and_verify_under_read_faults(store):
    """A failing read is an error, never wrong bytes; nothing is damaged by it."""
    ident = sorted(store.acked)[0]
    env = fault_env(store.tmp / "read.log", store.dir, "read", times=0)
    r = store.cli("get", ident, "-o", "-", env=env)
    assert r.returncode == 1 and r.stdout == b""
    assert "I/O error" in r.stderr.decode()
    r = store.cli("verify", "--no-progress", env=env)
    assert r.returncode != 0, "verify called a store it could not read clean"
    store.check("after read faults")


# --------------------------------------------------------------------------
# The server under faults


def upload(srv, data, ctype="image/jpeg"):
    return srv.upload(data, content_type=ctype, filename="x")


def test_server_write_faults_503_reads_keep_working(tmp_path):
    need_shim()
    s = Store(tmp_path)
    r, ids = s.put(IMAGES / "photo.jpg", IMAGES / "colour-srgb.jpg")
    assert r.returncode == 0
    s.fill_bytes()
    log = tmp_path / "server-fault.log"
    env = fault_env(log, s.dir / "blocks", "write,alloc", times=0, errno="ENOSPC")
    srv = Server(s.dir, ["--timeout", "5", "--quiet"], env, log_path=tmp_path / "srv.log").start()
    try:
        jpeg = (IMAGES / "orient-5.jpg").read_bytes()
        for _ in range(3):
            resp = upload(srv, jpeg)
            assert resp.status == 503, resp
            assert "detail" in resp.json()
        for ident, data in s.acked.items():
            resp = srv.request("GET", f"/images/{ident}")
            assert resp.status == 200 and resp.body == data
        assert srv.request("GET", "/healthz").status == 200
    finally:
        rc = srv.stop()
    assert rc == 0, srv.log()[-2000:]
    assert injected_count(log) > 0
    s.check("after the server's write faults")
    # A restart without the fault takes uploads again.
    srv = Server(s.dir, ["--timeout", "5", "--quiet"], log_path=tmp_path / "srv2.log").start()
    try:
        resp = upload(srv, jpeg)
        assert resp.status == 200, resp
        s.acked[resp.json()["metadata"]["id"]] = None
    finally:
        assert srv.stop() == 0
    s.check("after restart")


def test_server_one_failed_fsync_then_recovers(tmp_path):
    """One fdatasync fails: that upload is refused, later ones succeed, all durable."""
    need_shim()
    s = Store(tmp_path)
    r, _ = s.put(IMAGES / "photo.jpg")
    assert r.returncode == 0
    log = tmp_path / "sync.log"
    env = fault_env(log, s.dir / "blocks", "fdatasync", nth=1, times=1)
    srv = Server(s.dir, ["--timeout", "5", "--quiet"], env, log_path=tmp_path / "srv.log").start()
    statuses = []
    try:
        for name in ("orient-1.jpg", "orient-2.jpg", "orient-3.jpg"):
            resp = upload(srv, (IMAGES / name).read_bytes())
            statuses.append(resp.status)
            if resp.status == 200:
                s.acked[resp.json()["metadata"]["id"]] = None
            else:
                assert resp.status == 503, resp
    finally:
        assert srv.stop() == 0
    assert injected_count(log) == 1
    assert statuses[0] == 503 and statuses[1:] == [200, 200], statuses
    s.check("after one failed fsync")


# --------------------------------------------------------------------------
# A real full disk


def noise_png(w, h, seed):
    """An incompressible RGB PNG (stdlib only): its WebP is large."""
    rnd = random.Random(seed)
    raw = b"".join(b"\0" + rnd.randbytes(w * 3) for _ in range(h))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b""))


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB tmpfs, unmounted afterwards."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a real full disk needs root to mount a small tmpfs")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def big_webp(tmp_path):
    """A ~280 KB WebP of noise, converted once; stored as is afterwards
    (an uploaded WebP that needs no change is not re-encoded)."""
    need_binary()
    png = tmp_path / "noise.png"
    png.write_bytes(noise_png(640, 640, 7))
    conv = Store(tmp_path / "conv")
    conv.dir.mkdir(parents=True)
    r, ids = conv.put(png)
    assert r.returncode == 0, r.stderr.decode()
    data = conv.get(ids[0])
    assert data[:4] == b"RIFF" and len(data) > 100_000
    return data


def test_full_disk_server_503_reads_work_remount_resumes(tmp_path, small_disk):
    webp = big_webp(tmp_path)
    data_dir = small_disk / "data"
    srv = Server(data_dir, ["--timeout", "5", "--quiet", "--max-block-size", "1M"],
                 log_path=tmp_path / "srv.log").start()
    acked = {}
    try:
        status = 200
        for _ in range(200):
            resp = upload(srv, webp, "image/webp")
            status = resp.status
            if status != 200:
                break
            acked[resp.json()["metadata"]["id"]] = webp
        assert status == 503, f"a full disk gave {status}: {resp.body[:200]!r}"
        assert "detail" in resp.json()
        assert len(acked) >= 10, "the disk filled up before anything was stored"
        # Reads keep working, also for uncached images.
        for ident, data in acked.items():
            resp = srv.request("GET", f"/images/{ident}")
            assert resp.status == 200 and resp.body == data
        assert srv.request("GET", "/healthz").status == 200
        # More room: the same server takes uploads again.
        subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)
        resp = upload(srv, webp, "image/webp")
        assert resp.status == 200, resp
        acked[resp.json()["metadata"]["id"]] = webp
    finally:
        assert srv.stop() == 0, srv.log()[-2000:]
    s = Store(small_disk)
    s.acked = acked
    s.check("after the full disk")


def fill_disk_cli(tmp_path, small_disk):
    """Puts a large WebP through the CLI until the small disk is full: the
    last put must fail naming ENOSPC after at least 10 were stored. Returns
    the store, the WebP and its file."""
    webp = big_webp(tmp_path)
    src = tmp_path / "big.webp"
    src.write_bytes(webp)
    s = Store(small_disk, args=["--max-block-size", "1M"])
    r = None
    for _ in range(200):
        r, ids = s.put(src)
        if r.returncode != 0:
            break
    assert r.returncode == 1, "the disk never filled"
    assert "no space left on device" in r.stderr.decode(), r.stderr.decode()
    for ident in s.acked:
        s.acked[ident] = webp
    assert len(s.acked) >= 10
    return s, webp, src


def test_full_disk_cli_delete_compact_resumes(tmp_path, small_disk):
    """Full disk: put says ENOSPC, reads work, deleting a whole block and
    compacting frees its space, and puts resume."""
    s, webp, src = fill_disk_cli(tmp_path, small_disk)
    s.check("full")
    # Every image of the first block: deleting them makes it wholly dead,
    # so compaction has nothing to copy and only removes the file.
    first = min(int(i[:6], 16) for i in s.acked)
    victims = [i for i in s.acked if int(i[:6], 16) == first]
    r = s.cli("rm", *victims)
    assert r.returncode == 0, f"cannot delete on a full disk: {r.stderr.decode()}"
    s.deleted.update(victims)
    r = s.cli("compact", "--no-progress")
    assert r.returncode == 0, r.stderr.decode()
    r, ids = s.put(src)
    assert r.returncode == 0 and len(ids) == 1, r.stderr.decode()
    s.acked[ids[0]] = webp
    s.check("after delete and compact")


def test_full_disk_cli_enlarged_resumes(tmp_path, small_disk):
    """Full disk through the CLI: ENOSPC named, nothing lost; more room, puts resume."""
    s, webp, src = fill_disk_cli(tmp_path, small_disk)
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)
    r, ids = s.put(src)
    assert r.returncode == 0 and len(ids) == 1, r.stderr.decode()
    s.acked[ids[0]] = webp
    s.check("after enlarging")
