"""Client mode: BlockManager(url=...) against a real `fastblocks serve`, over TCP and a Unix
socket, and the original README's app under `uvicorn --workers 4` sharing one server."""

import asyncio
import concurrent.futures
import glob
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from fastblocks import BlockManager, ImageError

BUILD = os.environ.get("FB_BUILD_DIR", "")
CORPUS = os.environ.get("FB_CORPUS_DIR", "")
SOURCE = os.environ.get("FB_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
FASTBLOCKS = os.path.join(BUILD, "fastblocks")

pytestmark = pytest.mark.skipif(not os.access(FASTBLOCKS, os.X_OK),
                                reason="the fastblocks binary is not built")


class Server:
    """`fastblocks serve` on a temporary store; .url is the address it announced."""

    def __init__(self, data, listen, key):
        env = {k: v for k, v in os.environ.items() if not k.startswith("FASTBLOCKS_")}
        env["FASTBLOCKS_KEY"] = key.decode()
        self.proc = subprocess.Popen(
            [FASTBLOCKS, "serve", "--data", data, "--listen", listen, "--quiet",
             "--compression"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        line = self.proc.stdout.readline().decode()
        m = re.search(r"listening on (\S+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r} {self.proc.stderr.read()!r}")
        self.url = m.group(1)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            assert self.proc.wait(timeout=30) == 0
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture
def server(tmp_path):
    s = Server(str(tmp_path / "data"), "127.0.0.1:0", BlockManager.generate_encryption_key())
    yield s
    s.stop()


@pytest.fixture(scope="module")
def jpegs():
    out = []
    for path in sorted(glob.glob(os.path.join(CORPUS, "web", "*.jpg")))[:4]:
        with open(path, "rb") as f:
            out.append(f.read())
    assert out
    return out


def is_webp(data):
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def check_round_trip(m, jpeg):
    meta = asyncio.run(m.save_image(jpeg))
    assert {"id", "block", "offset", "size", "width", "height", "bytes"} <= set(meta)
    data = asyncio.run(m.read_image(meta["block"], meta["offset"], meta["size"]))
    assert is_webp(data) and len(data) == meta["bytes"]
    assert asyncio.run(m.read(meta["id"])) == data
    assert m.read_sync(meta["id"]) == data
    assert asyncio.run(m.meta(meta["id"])) == meta
    assert m.meta_sync(meta["block"], meta["offset"], meta["size"]) == meta
    stats = asyncio.run(m.delete_image(meta["block"], meta["offset"], meta["size"]))
    assert stats["block"] == meta["block"] and stats["dead_records"] >= 1
    assert set(stats) == {"block", "file_bytes", "live_bytes", "dead_bytes", "live_records",
                          "dead_records", "sealed"}
    with pytest.raises(FileNotFoundError):
        asyncio.run(m.read_image(meta["block"], meta["offset"], meta["size"]))
    with pytest.raises(FileNotFoundError):
        m.read_sync(meta["id"])
    return meta


def test_client_over_tcp(server, jpegs):
    assert server.url.startswith("http://127.0.0.1:")
    with BlockManager(url=server.url) as m:
        check_round_trip(m, jpegs[0])
        # Same errors as the embedded mode.
        with pytest.raises(ImageError) as e:
            m.save_image_sync(b"not an image")
        assert e.value.code == "EUNSUPPORTED"
        with pytest.raises(ImageError) as e:
            m.save_image_sync(jpegs[0][:3000])
        assert e.value.code == "EIMAGE"
        with pytest.raises(FileNotFoundError):
            m.read_image_sync("../../etc/passwd", 0, 10)
        with pytest.raises(ValueError):
            m.read_sync("nope")
        with pytest.raises(ValueError):
            m.read_image_sync("block_00000001.fbk", -5, 10)
        with pytest.raises(TypeError):
            m.read_image_sync("block_00000001.fbk", "5", 10)
        with pytest.raises(TypeError):
            m.save_image_sync("text")
        opts = m.save_image_sync(jpegs[1], max_dimension=50)
        assert max(opts["width"], opts["height"]) == 50


def test_client_reuses_one_connection_per_thread(server, jpegs):
    with BlockManager(url=server.url) as m:
        meta = m.save_image_sync(jpegs[0])
        client = m._store
        conn = client._tls.conn
        local = conn.sock.getsockname()
        for _ in range(20):
            assert is_webp(m.read_sync(meta["id"]))
        assert client._tls.conn is conn and conn.sock.getsockname() == local
        # Async calls run on the pool's threads: at most one connection per thread.
        async def many():
            return await asyncio.gather(*(m.read(meta["id"]) for _ in range(40)))
        assert len(set(asyncio.run(many()))) == 1
        assert len(client._conns) <= 1 + m._executor._max_workers


def test_client_after_server_restart(tmp_path, jpegs):
    key = BlockManager.generate_encryption_key()
    data = str(tmp_path / "data")
    sock = str(tmp_path / "fb.sock")
    s = Server(data, "unix:" + sock, key)
    try:
        assert s.url == "unix:" + sock
        m = BlockManager(url=s.url)
        meta = check_round_trip(m, jpegs[0])
        kept = m.save_image_sync(jpegs[1])
    finally:
        s.stop()
    # A dead server is a StoreError, not a hang.
    with pytest.raises(OSError):
        m.read_sync(kept["id"])
    s = Server(data, "unix:" + sock, key)
    try:
        # The stale connection is replaced without the caller noticing.
        assert is_webp(m.read_sync(kept["id"]))
        with pytest.raises(FileNotFoundError):
            m.read_sync(meta["id"])
        m.close()
    finally:
        s.stop()


def test_fastblocks_url_environment(server, jpegs, monkeypatch):
    monkeypatch.setenv("FASTBLOCKS_URL", server.url)
    # The README's constructor call, unchanged: it becomes a client.
    m = BlockManager(max_block_size=10 * 1024 * 1024, compression=True,
                     encryption_key=BlockManager.generate_encryption_key(), cache_size=50)
    assert m.url == server.url
    check_round_trip(m, jpegs[0])
    m.close()


def test_readme_app_with_four_uvicorn_workers(tmp_path, jpegs):
    httpx = pytest.importorskip("httpx")
    key = BlockManager.generate_encryption_key()
    fb_sock = str(tmp_path / "fb.sock")
    app_sock = str(tmp_path / "app.sock")
    s = Server(str(tmp_path / "data"), "unix:" + fb_sock, key)
    env = dict(os.environ, FASTBLOCKS_URL=s.url, FASTBLOCKS_KEY=key.decode())
    app = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--app-dir",
         os.path.join(SOURCE, "examples"), "--uds", app_sock, "--workers", "4",
         "--log-level", "warning"],
        cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        transport = httpx.HTTPTransport(uds=app_sock)
        with httpx.Client(transport=transport, base_url="http://app", timeout=60) as c:
            deadline = time.time() + 60
            while True:
                try:
                    if c.get("/docs").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert app.poll() is None, app.stdout.read().decode()
                assert time.time() < deadline, "uvicorn did not start"
                time.sleep(0.2)

            def upload(i):
                with httpx.Client(transport=httpx.HTTPTransport(uds=app_sock),
                                  base_url="http://app", timeout=60) as cc:
                    r = cc.post("/upload/", files={"file": (f"{i}.jpg", jpegs[i % len(jpegs)],
                                                            "image/jpeg")})
                    assert r.status_code == 200, r.text
                    return r.json()["metadata"]

            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                metas = list(pool.map(upload, range(16)))
            assert len({x["id"] for x in metas}) == 16
            for x in metas:
                r = c.get(f"/images/{x['block']}/{x['offset']}/{x['size']}")
                assert r.status_code == 200 and is_webp(r.content)
                assert len(r.content) == x["bytes"]
            x = metas[0]
            url = f"/images/{x['block']}/{x['offset']}/{x['size']}"
            r = c.delete(url)
            assert r.status_code == 200 and r.json()["updated_metadata"]["block"] == x["block"]
            assert c.get(url).status_code == 404
        # Every worker was a client of the one server: it holds all the images.
        with BlockManager(url=s.url) as m:
            for x in metas[1:]:
                assert m.meta_sync(x["id"])["bytes"] == x["bytes"]
    finally:
        app.send_signal(signal.SIGINT)
        try:
            app.wait(timeout=30)
        except subprocess.TimeoutExpired:
            app.kill()
        s.stop()
    log = app.stdout.read().decode()
    assert "StoreLockedError" not in log and "Traceback" not in log, log
