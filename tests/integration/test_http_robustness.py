"""`fastblocks serve` against hostile and heavy clients: malformed requests
written raw to a socket, oversized headers, lying lengths, stalled clients,
limits, auth, and concurrent uploads with reads."""

import concurrent.futures
import socket
import threading
import time

import pytest

from conftest import corpus_files, multipart_body


@pytest.fixture(scope="module")
def pngs():
    files = [p for p in corpus_files("all", ("*.png",)) if 2000 < p.stat().st_size < 60000]
    return [p.read_bytes() for p in files[:8]]


def read_status(sock, timeout=10):
    """The status code of the first response on sock, or None if closed."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk
    return int(data.split(b" ", 2)[1])


def raw_status(server, raw, tolerated=(), timeout=10):
    """Writes raw to a fresh connection: the status of the reply, or None if
    the server closed the connection or one of the tolerated exceptions
    (a reset, a timeout) ended the exchange."""
    s = server.raw_socket()
    try:
        s.sendall(raw)
        return read_status(s, timeout)
    except tolerated:
        return None
    finally:
        s.close()


def assert_alive(server):
    r = server.request("GET", "/healthz")
    assert r.status == 200


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET /healthz HTTP/9.9\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    b"POST /images HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header Without Colon\r\n\r\n",
    b"\x00\x01\x02\xff\r\n\r\n",
    b"GET /images/\x00\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
])
def test_malformed_requests(server, raw):
    status = raw_status(server, raw, (ConnectionResetError, socket.timeout))
    assert status is None or 400 <= status < 600, status
    assert_alive(server)


def test_oversized_headers(server):
    for raw in (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n",
                b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"):
        status = raw_status(server, raw, (ConnectionResetError, BrokenPipeError))
        assert status in (None, 413, 414, 431), status
    assert_alive(server)


def test_connection_memory_bounds_request_headers(server_factory):
    # A browser with big cookies sends several KiB of headers: the default
    # buffer (32 KiB, half of it for headers) takes 12 KiB, 4 KiB refuses them.
    raw = (b"GET /healthz HTTP/1.1\r\nHost: x\r\nCookie: " + b"c" * 12288 +
           b"\r\nConnection: close\r\n\r\n")
    assert raw_status(server_factory(), raw) == 200
    small = server_factory(args=["--connection-memory", "4K"])
    assert raw_status(small, raw, (ConnectionResetError, BrokenPipeError)) in (None, 413, 431)
    assert_alive(small)


def test_stalled_clients_time_out_while_others_are_served(server_factory):
    server = server_factory(args=["--timeout", "2"])
    stalled = []
    # A partial request line, a partial header block, and a lying
    # Content-Length: all stall.
    for raw in (b"GET /heal",
                b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
                b"POST /images HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789"):
        s = server.raw_socket()
        s.sendall(raw)
        stalled.append(s)
    t0 = time.monotonic()
    for _ in range(20):
        t = time.monotonic()
        assert_alive(server)
        assert time.monotonic() - t < 1.0
    for s in stalled:
        s.settimeout(10)
        try:
            data = s.recv(4096)
            # Closed, possibly after an error reply; never a success.
            assert data == b"" or not data.startswith(b"HTTP/1.1 2"), data
        except ConnectionResetError:
            pass
        s.close()
    assert time.monotonic() - t0 < 9
    assert_alive(server)


def test_upload_limits(server_factory, pngs):
    server = server_factory(args=["--max-upload", "64K"])
    head = b"POST /images HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
    chunked = head + b"Transfer-Encoding: chunked\r\n\r\n"

    def framed(data):
        return b"%x\r\n" % len(data) + data + b"\r\n"

    # Declared too large: refused before the body is read.
    assert raw_status(server, head + b"Content-Length: 10000000\r\n\r\n") == 413
    # Chunked, growing past the limit: libmicrohttpd 0.9.75 cannot answer
    # before the body ends, so the server drains it and then says 413.
    s = server.raw_socket()
    s.sendall(chunked)
    chunk = b"x" * 16384
    for _ in range(8):
        s.sendall(framed(chunk))
    s.sendall(b"0\r\n\r\n")
    assert read_status(s) == 413
    s.close()
    # A chunked body that never ends is cut off after twice the limit.
    s = server.raw_socket()
    s.sendall(chunked)
    closed = False
    try:
        for _ in range(64):
            s.sendall(framed(chunk))
        closed = read_status(s) is None
    except (BrokenPipeError, ConnectionResetError):
        closed = True
    assert closed
    s.close()
    # No length at all.
    assert raw_status(server, head + b"\r\n") == 411
    # Within the limit, chunked works.
    assert raw_status(server, chunked + framed(pngs[0]) + b"0\r\n\r\n", timeout=30) == 201
    r = server.request("GET", "/metrics")
    text = r.body.decode()
    assert 'fastblocks_uploads_rejected_total{reason="too_large"} 2' in text, text
    assert 'fastblocks_uploads_rejected_total{reason="no_length"} 1' in text


def test_auth(server_factory, tmp_path, pngs):
    token_file = tmp_path / "token"
    token_file.write_text("  s3cret-token  \n")
    for server in (server_factory(args=["--token-file", str(token_file)]),
                   server_factory(env={"FASTBLOCKS_TOKEN": "s3cret-token"})):
        png = pngs[0]
        h = {"Content-Type": "image/png"}
        r = server.request("POST", "/images", body=png, headers=h)
        assert r.status == 401
        assert r.header("www-authenticate") == "Bearer"
        assert "detail" in r.json()
        for bad in ("Bearer wrong", "Bearer s3cret-toke", "Bearer s3cret-tokenX",
                    "Basic s3cret-token", "s3cret-token"):
            r = server.request("POST", "/images", body=png, headers={**h, "Authorization": bad})
            assert r.status == 401, bad
        body, ctype = multipart_body(png)
        assert server.request("POST", "/upload/", body=body,
                              headers={"Content-Type": ctype}).status == 401
        good = {**h, "Authorization": "Bearer s3cret-token"}
        r = server.request("POST", "/images", body=png, headers=good)
        assert r.status == 201, r
        loc = r.header("location")
        # Reads stay public.
        assert server.request("GET", loc).status == 200
        assert server.request("GET", loc + "/meta").status == 200
        assert server.request("DELETE", loc).status == 401
        assert server.request("DELETE", loc,
                              headers={"Authorization": "Bearer s3cret-token"}).status == 200


def test_concurrent_uploads_and_reads(server, pngs):
    first = server.request("POST", "/images", body=pngs[0], headers={"Content-Type": "image/png"})
    assert first.status == 201
    loc = first.header("location")
    expected = server.request("GET", loc).body
    stop = threading.Event()
    read_errors = []
    reads = [0]

    def reader():
        conn = server.connection()
        try:
            while not stop.is_set():
                r = server.request("GET", loc, conn=conn)
                if r.status != 200 or r.body != expected:
                    read_errors.append(r.status)
                reads[0] += 1
        finally:
            conn.close()

    def uploader(i):
        out = []
        conn = server.connection(timeout=60)
        try:
            for j in range(4):
                png = pngs[(i + j) % len(pngs)]
                r = server.request("POST", "/images", body=png,
                                   headers={"Content-Type": "image/png"}, conn=conn)
                assert r.status == 201, r
                out.append(r.json())
        finally:
            conn.close()
        return out

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for t in readers:
        t.start()
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        metas = [m for ms in ex.map(uploader, range(4)) for m in ms]
    stop.set()
    for t in readers:
        t.join()
    assert not read_errors
    assert reads[0] > 0
    ids = {m["id"] for m in metas}
    assert len(ids) == 16
    for m in metas:
        r = server.request("GET", f"/images/{m['id']}")
        assert r.status == 200 and len(r.body) == m["bytes"]
        r = server.request("GET", f"/images/{m['block']}/{m['offset']}/{m['size']}")
        assert r.status == 200 and len(r.body) == m["bytes"]


def test_many_connections(server):
    socks = [server.raw_socket() for _ in range(100)]
    try:
        for s in socks:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        for s in socks:
            assert read_status(s) == 200
    finally:
        for s in socks:
            s.close()
    assert_alive(server)


def test_pipelined_requests(server):
    s = server.raw_socket()
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
        s.settimeout(5)
        data = b""
        deadline = time.monotonic() + 5
        while data.count(b"HTTP/1.1 200") < 3 and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        assert data.count(b"HTTP/1.1 200") == 3, data
    finally:
        s.close()
