"""`fastblocks serve` as a process: flags and environment, restart
persistence, graceful shutdown with an upload in flight, Unix sockets,
start-up errors."""

import os
import signal
import subprocess
import threading
import time

import pytest

from conftest import BINARY, Server, corpus_files, multipart_body


def run_cli(*args, env=None, timeout=60):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([str(BINARY), *args], capture_output=True, timeout=timeout, env=e)


@pytest.fixture(scope="module")
def png():
    files = [p for p in corpus_files("all", ("*.png",)) if 2000 < p.stat().st_size < 60000]
    return files[0].read_bytes()


def test_help_and_usage_errors():
    if not BINARY.exists():
        pytest.skip("binary not built")
    r = run_cli("serve", "--help")
    assert r.returncode == 0
    out = r.stdout.decode()
    for flag in ("--listen", "--data", "--threads", "--max-connections", "--max-upload",
                 "--token-file", "--quiet", "FASTBLOCKS_LISTEN", "unix:PATH"):
        assert flag in out, flag
    for args in (["--no-such-flag"], ["--threads", "zero"], ["--max-upload", "-1"],
                 ["--timeout", "0"], ["extra-argument"]):
        r = run_cli("serve", *args)
        assert r.returncode == 2, args
        assert r.stderr.decode().startswith("fastblocks serve: "), r.stderr
    r = run_cli("serve", env={"FASTBLOCKS_THREADS": "lots"})
    assert r.returncode == 2
    assert "FASTBLOCKS_THREADS" in r.stderr.decode()


def test_start_errors(tmp_path, server_factory):
    r = run_cli("serve", "--data", str(tmp_path / "d1"), "--listen", "127.0.0.1")
    assert r.returncode == 1
    assert "listen address" in r.stderr.decode()
    r = run_cli("serve", "--data", str(tmp_path / "d2"), "--listen", "256.1.1.1:0")
    assert r.returncode == 1
    r = run_cli("serve", "--data", str(tmp_path / "d3"), "--token-file", str(tmp_path / "none"))
    assert r.returncode == 1
    assert "token file" in r.stderr.decode()
    # The port is taken.
    s = server_factory()
    r = run_cli("serve", "--data", str(tmp_path / "d4"), "--listen", f"127.0.0.1:{s.port}")
    assert r.returncode == 1
    assert "cannot listen" in r.stderr.decode()
    # The store has a writer already.
    r = run_cli("serve", "--data", str(s.data_dir), "--listen", "127.0.0.1:0")
    assert r.returncode == 1
    assert r.stderr.decode().startswith("fastblocks serve: ")


def test_environment_configuration(tmp_path, png):
    data = tmp_path / "envdata"
    s = Server(data, listen="127.0.0.1:0",
               env={"FASTBLOCKS_MAX_UPLOAD": "1K", "FASTBLOCKS_QUIET": "1"})
    # --listen is given by the fixture; FASTBLOCKS_LISTEN is checked below.
    s.start()
    try:
        r = s.request("POST", "/images", body=png, headers={"Content-Type": "image/png"})
        assert r.status == 413
        assert '"POST /images' not in s.log()
    finally:
        assert s.stop() == 0
    e = dict(os.environ, FASTBLOCKS_LISTEN="127.0.0.1:0", FASTBLOCKS_DATA=str(data))
    p = subprocess.Popen([str(BINARY), "serve"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, env=e)
    try:
        line = p.stdout.readline().decode()
        assert line.startswith("fastblocks: listening on http://127.0.0.1:"), line
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=30) == 0
        p.stdout.close()


def test_restart_persistence(server_factory, tmp_path, png):
    data = tmp_path / "persist"
    s = server_factory(data_dir=data)
    metas = []
    for q in ("", "?quality=40", "?lossless=1"):
        r = s.request("POST", "/images" + q, body=png, headers={"Content-Type": "image/png"})
        assert r.status == 201
        metas.append(r.json())
    bodies = [s.request("GET", f"/images/{m['id']}").body for m in metas]
    assert s.request("DELETE", f"/images/{metas[1]['id']}").status == 200
    assert s.stop() == 0

    s2 = server_factory(data_dir=data)
    assert s2.request("GET", f"/images/{metas[0]['id']}").body == bodies[0]
    m = metas[2]
    assert s2.request("GET", f"/images/{m['block']}/{m['offset']}/{m['size']}").body == bodies[2]
    assert s2.request("GET", f"/images/{metas[1]['id']}").status == 404


def test_graceful_shutdown_finishes_upload(server_factory, tmp_path):
    big = corpus_files("large", ("*.jpg", "*.jpeg"))[0].read_bytes()
    data = tmp_path / "graceful"
    s = server_factory(data_dir=data)
    result = {}
    body, ctype = multipart_body(big)

    def upload():
        try:
            r = s.request("POST", "/upload/", body=body, headers={"Content-Type": ctype})
            result["status"] = r.status
            result["json"] = r.json()
        except Exception as exc:  # reported below
            result["error"] = exc

    t = threading.Thread(target=upload)
    t.start()
    # Wait until the upload is being converted, then ask the server to stop.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = s.request("GET", "/metrics").body.decode()
        if "fastblocks_uploads_in_progress 1" in m:
            break
        time.sleep(0.01)
    else:
        pytest.fail("the upload never started")
    s.send_signal(signal.SIGTERM)
    t.join(timeout=120)
    assert result.get("status") == 200, result
    assert s.proc.wait(timeout=60) == 0
    assert "shutting down" in s.log()
    s.stop()
    # New connections are refused once it stopped; the image is durable.
    s2 = server_factory(data_dir=data)
    meta = result["json"]["metadata"]
    r = s2.request("GET", f"/images/{meta['block']}/{meta['offset']}/{meta['size']}")
    assert r.status == 200 and len(r.body) == meta["bytes"]


def test_unix_socket(server_factory, tmp_path, png):
    path = tmp_path / "fb.sock"
    s = server_factory(listen=f"unix:{path}")
    assert s.url == f"unix:{path}"
    assert path.exists()
    conn = s.connection()
    try:
        r = s.request("POST", "/images", body=png, headers={"Content-Type": "image/png"},
                      conn=conn)
        assert r.status == 201
        sock = conn.sock
        for _ in range(3):
            r = s.request("GET", r.header("location") or "/healthz", conn=conn)
            assert r.status == 200
        assert conn.sock is sock
    finally:
        conn.close()
    assert "unix" in s.log()
    # A second server refuses a socket that is in use.
    r = run_cli("serve", "--data", str(tmp_path / "other"), "--listen", f"unix:{path}")
    assert r.returncode == 1
    assert s.stop() == 0
    assert not path.exists()
    # A stale socket file left behind is replaced.
    import socket as socketmod
    stale = socketmod.socket(socketmod.AF_UNIX, socketmod.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    s2 = server_factory(listen=f"unix:{path}", data_dir=tmp_path / "d2")
    assert s2.request("GET", "/healthz").status == 200


def metric(server, name):
    text = server.request("GET", "/metrics").body.decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_background_compaction(server_factory, tmp_path, png):
    # Small blocks so that a few uploads seal some; every image of the first
    # blocks but one is then deleted, and the server must reclaim that space
    # by itself while it keeps serving every surviving image, by id and by
    # its original address.
    data = tmp_path / "compacting"
    s = server_factory(data_dir=data, args=["--max-block-size", "8K", "--compact-interval", "1",
                                            "--compact-threshold", "0.5"])
    metas = []
    for q in ("?quality=%d" % q for q in range(30, 90, 5)):
        r = s.request("POST", "/images" + q, body=png, headers={"Content-Type": "image/png"})
        assert r.status == 201, r
        metas.append(r.json())
    first_blocks = sorted({m["block"] for m in metas})[:-1]
    assert first_blocks, "the uploads did not fill a block"
    keep, gone = [], []
    for m in metas:
        (gone if m["block"] in first_blocks and m is not metas[0] else keep).append(m)
    bodies = {m["id"]: s.request("GET", f"/images/{m['id']}").body for m in keep}
    for m in gone:
        assert s.request("DELETE", f"/images/{m['id']}").status == 200
    deadline = time.monotonic() + 30
    while metric(s, "fastblocks_compacted_blocks_total") < 1:
        assert time.monotonic() < deadline, s.log()[-2000:]
        time.sleep(0.2)
    assert metric(s, "fastblocks_compaction_failures_total") == 0
    assert metric(s, "fastblocks_compacted_bytes_total") > 0
    for m in keep:
        assert s.request("GET", f"/images/{m['id']}").body == bodies[m["id"]]
        seed = s.request("GET", f"/images/{m['block']}/{m['offset']}/{m['size']}")
        assert seed.status == 200 and seed.body == bodies[m["id"]]
    for m in gone:
        assert s.request("GET", f"/images/{m['id']}").status == 404
    assert "compacted" in s.log()
    assert s.stop() == 0
    # What the server did is on disk: a fresh reader sees it and verify is clean.
    out = run_cli("verify", "--data", str(data))
    assert out.returncode == 0, out.stderr
    assert not (data / "blocks" / first_blocks[0]).exists()


def test_bad_server_flags_rejected(tmp_path):
    for flag, value in (("--compact-interval", "-1"), ("--compact-threshold", "0"),
                        ("--compact-threshold", "1.5"), ("--compact-threshold", "x"),
                        ("--connection-memory", "1K"), ("--connection-memory", "2M"),
                        ("--connection-memory", "lots")):
        r = run_cli("serve", "--data", str(tmp_path / "d"), flag, value)
        assert r.returncode == 2, (flag, value, r)
        assert f"bad value '{value}' for {flag}".encode() in r.stderr
