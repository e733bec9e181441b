"""`fastblocks serve`: every route and status, HTTP header semantics, and
the seed README's client flow, against the real binary on 127.0.0.1."""

import json
import re
import time

import pytest

from conftest import corpus_files, multipart_body

ID_RE = re.compile(r"^[0-9a-f]{24}$")
META_KEYS = {"id", "block", "offset", "size", "width", "height", "bytes", "content_type"}


def is_webp(data):
    return len(data) > 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP"


@pytest.fixture(scope="module")
def small_png():
    # A small real PNG: converts in milliseconds, so tests stay fast.
    files = [p for p in corpus_files("all", ("*.png",)) if 2000 < p.stat().st_size < 60000]
    return files[0].read_bytes()


def upload_id(server, data, query=""):
    r = server.request("POST", "/images" + query, body=data,
                       headers={"Content-Type": "application/octet-stream"})
    assert r.status == 201, r
    return r.json()


# --------------------------------------------------------------------------
# The seed README's client flow


def test_seed_readme_flow(server, jpeg_bytes):
    r = server.upload(jpeg_bytes)
    assert r.status == 200, r
    assert r.header("content-type") == "application/json"
    doc = r.json()
    assert doc["message"] == "Image uploaded successfully"
    meta = doc["metadata"]
    assert META_KEYS <= set(meta)
    assert re.fullmatch(r"block_\d{8}\.fbk", meta["block"])
    assert meta["content_type"] == "image/webp"
    assert meta["width"] > 0 and meta["height"] > 0
    path = f"/images/{meta['block']}/{meta['offset']}/{meta['size']}"

    r = server.request("GET", path)
    assert r.status == 200
    assert r.header("content-type") == "image/webp"
    assert is_webp(r.body)
    assert len(r.body) == meta["bytes"] == int(r.header("content-length"))

    r = server.request("DELETE", path)
    assert r.status == 200, r
    doc = r.json()
    assert doc["message"] == "Image deleted successfully"
    assert doc["updated_metadata"]["block"] == meta["block"]
    assert doc["updated_metadata"]["dead_records"] >= 1

    r = server.request("GET", path)
    assert r.status == 404
    assert r.json() == {"detail": "Image not found"}
    r = server.request("DELETE", path)
    assert r.status == 404
    assert r.json() == {"detail": "Image not found"}


def test_upload_without_trailing_slash(server, small_png):
    r = server.upload(small_png, path="/upload", filename="a.png", content_type="image/png")
    assert r.status == 200, r


# --------------------------------------------------------------------------
# Id endpoints


def test_id_endpoints(server, small_png):
    r = server.request("POST", "/images", body=small_png, headers={"Content-Type": "image/png"})
    assert r.status == 201, r
    meta = r.json()
    assert ID_RE.match(meta["id"])
    assert r.header("location") == f"/images/{meta['id']}"
    assert META_KEYS <= set(meta)

    r = server.request("GET", f"/images/{meta['id']}")
    assert r.status == 200
    assert is_webp(r.body) and len(r.body) == meta["bytes"]

    r = server.request("GET", f"/images/{meta['id']}/meta")
    assert r.status == 200
    assert r.header("content-type") == "application/json"
    assert r.json() == meta

    # The triple and the id name the same bytes.
    r2 = server.request("GET", f"/images/{meta['block']}/{meta['offset']}/{meta['size']}")
    assert r2.body == server.request("GET", f"/images/{meta['id']}").body

    r = server.request("DELETE", f"/images/{meta['id']}")
    assert r.status == 200
    assert r.json()["message"] == "Image deleted successfully"
    for path in (f"/images/{meta['id']}", f"/images/{meta['id']}/meta"):
        r = server.request("GET", path)
        assert r.status == 404 and r.json() == {"detail": "Image not found"}


def test_multipart_upload_to_images(server, small_png):
    body, ctype = multipart_body(small_png, filename="x.png", content_type="image/png")
    r = server.request("POST", "/images", body=body, headers={"Content-Type": ctype})
    assert r.status == 201, r
    got = server.request("GET", r.header("location"))
    assert got.status == 200 and is_webp(got.body)


def test_wrong_cookie_is_not_found(server, small_png):
    meta = upload_id(server, small_png)
    forged = meta["id"][:16] + ("0" * 8 if meta["id"][16:] != "0" * 8 else "1" * 8)
    assert server.request("GET", f"/images/{forged}").status == 404
    assert server.request("DELETE", f"/images/{forged}").status == 404
    assert server.request("GET", f"/images/{meta['id']}").status == 200


def test_conversion_options(server, small_png, jpeg_bytes):
    low = upload_id(server, jpeg_bytes, "?quality=10&effort=0&max_dimension=300")
    high = upload_id(server, jpeg_bytes, "?quality=95&max_dimension=300")
    assert max(low["width"], low["height"]) == 300
    assert low["bytes"] < high["bytes"]
    lossless = upload_id(server, small_png, "?lossless=true")
    webp = server.request("GET", f"/images/{lossless['id']}").body
    assert b"VP8L" in webp[12:40]  # the lossless bitstream
    lossy = upload_id(server, small_png, "?lossless=0")
    webp = server.request("GET", f"/images/{lossy['id']}").body
    assert b"VP8L" not in webp[12:40]
    for q in ("?quality=101", "?quality=-1", "?quality=abc", "?effort=7", "?lossless=maybe",
              "?max_dimension=x"):
        r = server.request("POST", "/images" + q, body=small_png,
                           headers={"Content-Type": "image/png"})
        assert r.status == 400, (q, r)
        assert "detail" in r.json()


# --------------------------------------------------------------------------
# HTTP semantics


def test_image_headers_etag_and_304(server, small_png):
    meta = upload_id(server, small_png)
    path = f"/images/{meta['id']}"
    r = server.request("GET", path)
    etag = r.header("etag")
    assert etag == f'"{meta["id"]}"'
    assert r.header("cache-control") == "public, max-age=31536000, immutable"
    assert r.header("accept-ranges") == "bytes"
    assert r.header("last-modified").endswith(" GMT")
    for inm in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        r = server.request("GET", path, headers={"If-None-Match": inm})
        assert r.status == 304, inm
        assert r.body == b""
        assert r.header("etag") == etag
    r = server.request("GET", path, headers={"If-None-Match": '"other"'})
    assert r.status == 200 and len(r.body) == meta["bytes"]


def test_head(server, small_png):
    meta = upload_id(server, small_png)
    for path in (f"/images/{meta['id']}",
                 f"/images/{meta['block']}/{meta['offset']}/{meta['size']}"):
        r = server.request("HEAD", path)
        assert r.status == 200
        assert r.body == b""
        assert int(r.header("content-length")) == meta["bytes"]
        assert r.header("content-type") == "image/webp"
    assert server.request("HEAD", "/images/" + "0" * 24).status == 404
    assert server.request("HEAD", "/healthz").status == 200


def test_range(server, small_png):
    meta = upload_id(server, small_png)
    path = f"/images/{meta['id']}"
    full = server.request("GET", path).body
    n = len(full)
    cases = {
        "bytes=0-9": (0, 9),
        "bytes=10-": (10, n - 1),
        "bytes=-5": (n - 5, n - 1),
        f"bytes=5-{n + 100}": (5, n - 1),
    }
    for rng, (a, b) in cases.items():
        r = server.request("GET", path, headers={"Range": rng})
        assert r.status == 206, rng
        assert r.body == full[a:b + 1]
        assert r.header("content-range") == f"bytes {a}-{b}/{n}"
        assert int(r.header("content-length")) == b - a + 1
    for rng in (f"bytes={n}-", "bytes=-0", f"bytes={10**30}-"):
        r = server.request("GET", path, headers={"Range": rng})
        assert r.status == 416, rng
        assert r.header("content-range") == f"bytes */{n}"
    for rng in ("bytes=9-1", "bytes=abc", "bytes=-"):
        r = server.request("GET", path, headers={"Range": rng})
        assert r.status == 400, rng
    # Several ranges, other units: the whole image.
    for rng in ("bytes=0-1,5-6", "items=0-1"):
        r = server.request("GET", path, headers={"Range": rng})
        assert r.status == 200 and r.body == full
    # If-Range with the current tag honours the range; a foreign one does not.
    r = server.request("GET", path, headers={"Range": "bytes=0-3", "If-Range": f'"{meta["id"]}"'})
    assert r.status == 206 and r.body == full[:4]
    r = server.request("GET", path, headers={"Range": "bytes=0-3", "If-Range": '"nope"'})
    assert r.status == 200 and r.body == full


def test_keep_alive_reuses_one_connection(server, small_png):
    meta = upload_id(server, small_png)
    conn = server.connection()
    try:
        conn.connect()
        sock = conn.sock
        paths = [f"/images/{meta['id']}", "/healthz", "/nope", f"/images/{meta['id']}/meta",
                 "/images/" + "0" * 24, "/metrics"]
        for i in range(3):
            for p in paths:
                r = server.request("GET", p, conn=conn)
                assert r.status in (200, 404)
                assert (r.header("connection") or "").lower() != "close", p
                assert conn.sock is sock, f"connection was reopened after {p}"
        # An upload and a delete keep the connection too.
        r = server.request("POST", "/images", body=small_png,
                           headers={"Content-Type": "image/png"}, conn=conn)
        assert r.status == 201
        r = server.request("DELETE", r.header("location"), conn=conn)
        assert r.status == 200
        assert conn.sock is sock
    finally:
        conn.close()


# --------------------------------------------------------------------------
# Errors


def test_not_found_and_method_not_allowed(server):
    r = server.request("GET", "/nope")
    assert r.status == 404 and "detail" in r.json()
    cases = [("PUT", "/images/" + "0" * 24, "GET, HEAD, DELETE"),
             ("POST", "/healthz", "GET, HEAD"),
             ("GET", "/upload/", "POST"),
             ("DELETE", "/images", "POST"),
             ("PATCH", "/images/block_00000001.fbk/1/2", "GET, HEAD, DELETE"),
             ("DELETE", "/images/" + "0" * 24 + "/meta", "GET, HEAD")]
    for method, path, allow in cases:
        r = server.request(method, path)
        assert r.status == 405, (method, path)
        assert r.header("allow") == allow
        assert r.json() == {"detail": "Method Not Allowed"}


@pytest.mark.parametrize("path", [
    "/images/xyz",
    "/images/" + "A" * 24,
    "/images/" + "0" * 25,
    "/images/..",
    "/images/%2e%2e",
    "/images/..%2f..%2fetc%2fpasswd/0/10",
    "/images/../../etc/passwd",
    "/images/block_1.bin/0/10",
    "/images/block_00000001.fbk/-1/10",
    "/images/block_00000001.fbk/1/-10",
    "/images/block_00000001.fbk/18446744073709551616/10",
    "/images/block_00000001.fbk/99999999999999999999999/10",
    "/images/block_00000001.fbk/0x10/10",
    "/images/block_00000001.fbk/%2B10/10",
])
def test_bad_addresses_are_400(server, path):
    r = server.request("GET", path)
    assert r.status == 400, r
    assert "detail" in r.json()


def test_triples_inside_records_are_not_found(server, small_png):
    a = upload_id(server, small_png)
    b = upload_id(server, small_png, "?quality=50")
    blk, off, size = a["block"], a["offset"], a["size"]
    for o, s in [(off + 1, size - 1), (off, size + 1), (off, size - 1), (off - 8, size + 8),
                 (b["offset"], size), (off + size, 10), (0, 64), (10**12, 1)]:
        r = server.request("GET", f"/images/{blk}/{o}/{s}")
        assert r.status == 404, (o, s)
        assert r.json() == {"detail": "Image not found"}
    assert server.request("GET", f"/images/block_00000000.fbk/{off}/{size}").status == 404
    assert server.request("GET", f"/images/block_00000099.fbk/{off}/{size}").status == 404
    assert server.request("GET", f"/images/{blk}/{off}/{size}").status == 200


def test_upload_errors(server, jpeg_bytes):
    # Not an image at all.
    r = server.request("POST", "/images", body=b"hello, world" * 10,
                       headers={"Content-Type": "application/octet-stream"})
    assert r.status == 415, r
    assert "detail" in r.json()
    # A JPEG cut short: recognised, but not decodable.
    r = server.request("POST", "/images", body=jpeg_bytes[:2000],
                       headers={"Content-Type": "image/jpeg"})
    assert r.status == 422, r
    # /upload/ needs multipart.
    r = server.request("POST", "/upload/", body=jpeg_bytes,
                       headers={"Content-Type": "image/jpeg"})
    assert r.status == 415, r
    # Multipart without the "file" field, or broken.
    body, ctype = multipart_body(jpeg_bytes, field="image")
    r = server.request("POST", "/upload/", body=body, headers={"Content-Type": ctype})
    assert r.status == 400 and "file" in r.json()["detail"]
    r = server.request("POST", "/upload/", body=body[:200], headers={"Content-Type": ctype})
    assert r.status == 400, r
    r = server.request("POST", "/upload/", body=body,
                       headers={"Content-Type": "multipart/form-data"})
    assert r.status == 400 and "boundary" in r.json()["detail"]
    # Empty bodies.
    r = server.request("POST", "/images", body=b"", headers={"Content-Type": "image/png"})
    assert r.status == 400, r
    empty, ctype = multipart_body(b"")
    r = server.request("POST", "/upload/", body=empty, headers={"Content-Type": ctype})
    assert r.status == 400, r


def test_bad_corpus_files_never_crash(server):
    bad = corpus_files("bad", ("*",))[:25]
    for p in bad:
        if not p.is_file():
            continue
        r = server.upload(p.read_bytes(), filename=p.name)
        assert r.status in (200, 400, 413, 415, 422), (p.name, r)
        assert isinstance(r.json(), dict)
    assert server.request("GET", "/healthz").status == 200


# --------------------------------------------------------------------------
# Operations


def test_healthz_and_metrics(server, small_png):
    r = server.request("GET", "/healthz")
    assert r.status == 200 and r.json() == {"status": "ok"}
    meta = upload_id(server, small_png)
    for _ in range(3):
        server.request("GET", f"/images/{meta['id']}")
    server.request("GET", "/nope")
    server.request("POST", "/images", body=b"junk" * 10,
                   headers={"Content-Type": "application/octet-stream"})
    # A request is counted when libmicrohttpd reports it complete, which
    # may come just after the client has read the response: poll briefly.
    want = ('fastblocks_http_requests_total{route="images",method="POST",status="201"}',
            'fastblocks_http_requests_total{route="images",method="POST",status="415"}',
            'fastblocks_http_requests_total{route="none",method="GET",status="404"}')
    deadline = time.monotonic() + 5
    while True:
        r = server.request("GET", "/metrics")
        assert r.status == 200
        assert r.header("content-type").startswith("text/plain")
        values = {}
        for line in r.body.decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        if all(k in values for k in want) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert values['fastblocks_http_requests_total{route="image_id",method="GET",status="200"}'] \
        == 3
    assert values['fastblocks_http_requests_total{route="images",method="POST",status="201"}'] \
        == 1
    assert values['fastblocks_http_requests_total{route="none",method="GET",status="404"}'] == 1
    assert values['fastblocks_uploads_rejected_total{reason="unsupported"}'] == 1
    assert values['fastblocks_http_response_bytes_total{route="image_id"}'] == 3 * meta["bytes"]
    assert values['fastblocks_http_request_duration_seconds_count{route="image_id"}'] == 3
    assert values["fastblocks_store_live_records"] == 1
    assert values["fastblocks_store_live_bytes"] >= meta["bytes"]
    hits = values["fastblocks_cache_hits_total"]
    misses = values["fastblocks_cache_misses_total"]
    assert hits + misses >= 3
    assert values["fastblocks_store_synced_puts_total"] >= 1
    assert values["fastblocks_store_syncs_total"] >= 1


def test_access_log(server, small_png):
    server.request("GET", "/healthz?x=1")
    server.request("GET", "/nope%0aINJECTED")
    # The line is written when the request completes, which may be just
    # after the client has read the response.
    deadline = time.monotonic() + 10
    while True:
        lines = [l for l in server.log().splitlines() if '"GET ' in l]
        if len(lines) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert any(re.search(r'127\.0\.0\.1 "GET /healthz\?x=1 HTTP/1\.1" 200 15 [\d.]+ms$', l)
               for l in lines), lines
    assert not any(l.startswith("INJECTED") for l in server.log().splitlines())
    # The raw target is logged; were it decoded, the newline would be escaped.
    assert any(('"GET /nope%0aINJECTED HTTP/1.1" 404' in l
                or '"GET /nope\\x0aINJECTED HTTP/1.1" 404' in l) for l in lines), lines


def test_quiet_has_no_access_log(server_factory):
    s = server_factory(quiet=True)
    s.request("GET", "/healthz")
    assert '"GET /healthz' not in s.log()


def test_json_error_bodies_are_valid_json(server):
    for method, path in [("GET", "/images/%ff%fe"), ("GET", "/x"), ("PUT", "/images")]:
        r = server.request(method, path)
        assert r.status >= 400
        assert isinstance(json.loads(r.body), dict)
        assert r.header("content-type") == "application/json"
