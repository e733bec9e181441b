"""The backup procedure of docs/OPERATIONS.md, run while a server takes
uploads and deletes, must give a consistent copy: every image acknowledged
before the copy started is in it with the same bytes, every image whose
delete was acknowledged before the copy started is not, and the copy opens,
verifies and serves like any store.

The procedure is read from the document itself (the ``sh`` block whose first
line is ``# Consistent copy of a live store``), so the text and the test
cannot drift apart. Small blocks (--max-block-size 64K) make the active
block rotate during the copies, the case that needs the procedure's order.
"""

import hashlib
import json
import os
import pathlib
import random
import subprocess
import threading
import time

import pytest

from conftest import BINARY, Server

SOURCE = pathlib.Path(os.environ.get("FB_SOURCE_DIR",
                                     pathlib.Path(__file__).resolve().parents[2]))
OPERATIONS = SOURCE / "docs" / "OPERATIONS.md"
TITLE = "# Consistent copy of a live store"


def backup_script():
    text = OPERATIONS.read_text()
    for block in text.split("```sh\n")[1:]:
        code = block.split("```", 1)[0]
        if code.startswith(TITLE):
            return code
    pytest.fail(f"no ```sh block starting with {TITLE!r} in {OPERATIONS}")


def images():
    files = sorted((SOURCE / "tests" / "data" / "images").glob("*.jpg"))
    files += sorted((SOURCE / "tests" / "data" / "images").glob("*.png"))
    blobs = [f.read_bytes() for f in files]
    assert len(blobs) >= 3
    return blobs


class Load:
    """Uploaders and a deleter against one server, with a log of what was
    acknowledged when (monotonic clock)."""

    def __init__(self, server, blobs, uploaders=3):
        self.server = server
        self.blobs = blobs
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = []      # (time acknowledged, id, sha256 of the WebP)
        self.deleted = []    # (time acknowledged, id)
        self.errors = []
        self.threads = [threading.Thread(target=self.upload, args=(i,)) for i in range(uploaders)]
        self.threads.append(threading.Thread(target=self.delete))

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)
        assert not self.errors, self.errors[:5]

    def upload(self, seed):
        rnd = random.Random(seed)
        conn = self.server.connection()
        while not self.stop.is_set():
            data = rnd.choice(self.blobs)
            # Vary the bytes stored: the quality changes the WebP.
            q = rnd.randint(40, 95)
            try:
                conn.request("POST", f"/images?quality={q}", body=data,
                             headers={"Content-Type": "application/octet-stream"})
                r = conn.getresponse()
                body = r.read()
                if r.status != 201:
                    self.errors.append(("upload", r.status, body[:200]))
                    return
                meta = json.loads(body)
                conn.request("GET", f"/images/{meta['id']}")
                r = conn.getresponse()
                webp = r.read()
                t = time.monotonic()
                if r.status != 200:
                    self.errors.append(("get", r.status, webp[:200]))
                    return
            except OSError as e:
                self.errors.append(("upload", repr(e)))
                return
            # The upload was acknowledged before t (the GET came after it).
            with self.lock:
                self.acked.append((t, meta["id"], hashlib.sha256(webp).hexdigest()))

    def delete(self):
        rnd = random.Random(99)
        conn = self.server.connection()
        while not self.stop.is_set():
            time.sleep(0.02)
            with self.lock:
                live = [a for a in self.acked if a[1] not in {d[1] for d in self.deleted}]
            if len(live) < 10:
                continue
            victim = rnd.choice(live)[1]
            try:
                conn.request("DELETE", f"/images/{victim}")
                r = conn.getresponse()
                r.read()
            except OSError as e:
                self.errors.append(("delete", repr(e)))
                return
            if r.status != 200:
                self.errors.append(("delete", r.status))
                return
            with self.lock:
                self.deleted.append((time.monotonic(), victim))

    def snapshot(self):
        """(acknowledged ids -> sha, deleted ids) as of now."""
        with self.lock:
            return ({i: h for _, i, h in self.acked}, {i for _, i in self.deleted})


def run(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120, **kw)


def check_copy(copy, before_acked, before_deleted, deleted_ever, tmp_path, n):
    """The copy opens (a writer cuts a torn tail), verifies clean and holds
    exactly what it must."""
    srv = Server(copy, ["--quiet"], log_path=tmp_path / f"copy{n}.log").start()
    try:
        conn = srv.connection()
        for i, sha in before_acked.items():
            conn.request("GET", f"/images/{i}")
            r = conn.getresponse()
            body = r.read()
            if i in before_deleted:
                assert r.status == 404, f"copy {n}: {i} deleted before the copy but served"
            elif i in deleted_ever and r.status == 404:
                pass  # deleted while the copy was taken: either answer is right
            else:
                assert r.status == 200, f"copy {n}: acknowledged {i} missing: {r.status} {body}"
                assert hashlib.sha256(body).hexdigest() == sha, f"copy {n}: {i} differs"
    finally:
        assert srv.stop() == 0, srv.log()
    v = run([BINARY, "verify", "--data", copy, "--no-progress"])
    assert v.returncode == 0, f"copy {n} does not verify:\n{v.stdout}\n{v.stderr}"


def test_backup_of_a_live_store_is_consistent(tmp_path):
    script = backup_script()
    data = tmp_path / "data"
    server = Server(data, ["--quiet", "--max-block-size", "64K", "--durability", "always"],
                    log_path=tmp_path / "server.log").start()
    load = Load(server, images())
    load.start()
    copies = []
    try:
        time.sleep(1.0)
        # Copies at intervals until the active block has rotated a few times
        # (at least 4 copies, at most 40 s).
        deadline = time.monotonic() + 40
        n = 0
        while n < 4 or (len(list((data / "blocks").glob("*.fbk"))) < 4
                        and time.monotonic() < deadline):
            before_acked, before_deleted = load.snapshot()
            dst = tmp_path / f"backup{n}"
            env = dict(os.environ, SRC=str(data), DST=str(dst),
                       PATH=f"{BINARY.parent.resolve()}:{os.environ.get('PATH', '/usr/bin:/bin')}")
            p = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], env=env,
                               capture_output=True, text=True, timeout=120)
            assert p.returncode == 0, f"backup {n} failed:\n{p.stdout}\n{p.stderr}"
            copies.append((dst, before_acked, before_deleted))
            n += 1
            time.sleep(0.5)
    finally:
        load.finish()
        assert server.stop() == 0, server.log()
    _, deleted_ever = load.snapshot()
    blocks = len(list((data / "blocks").glob("block_*.fbk")))
    assert blocks >= 3, f"the active block never rotated ({blocks} blocks): the test is too weak"
    assert len(load.acked) >= 20 and len(load.deleted) >= 3, (len(load.acked), len(load.deleted))
    for n, (dst, acked, deleted) in enumerate(copies):
        assert acked, "nothing was acknowledged before the copy"
        check_copy(dst, acked, deleted, deleted_ever, tmp_path, n)
