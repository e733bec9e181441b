"""The command line and the HTTP service on the same store.

Images stored by `fastblocks put` are served byte for byte by `fastblocks
serve`, and images uploaded over HTTP come out of `fastblocks get`
unchanged; the CLI's read-only commands run next to the server, its
writing commands are refused while the server holds the store. The server
comes from conftest.py's `server_factory` (real binary, 127.0.0.1, port 0).
"""
import json

from conftest import corpus_files
from test_cli import run


def test_cli_put_then_http_get(tmp_path, server_factory):
    store = tmp_path / "data"
    files = corpus_files("web")[:2]
    r = run("put", "--data", store, "--json", "-j", "1", *files)
    assert r.rc == 0, r
    metas = [json.loads(l) for l in r.text.splitlines()]
    cli_bytes = [run("get", "--data", store, m["id"]).out for m in metas]

    srv = server_factory(data_dir=store)
    for m, want in zip(metas, cli_bytes):
        for path in (f"/images/{m['id']}", f"/images/{m['block']}/{m['offset']}/{m['size']}"):
            resp = srv.request("GET", path)
            assert resp.status == 200, (path, resp)
            assert resp.body == want
            assert len(want) == m["bytes"]
        # One metadata object for HTTP and CLI ("file" is put's addition).
        meta = srv.request("GET", f"/images/{m['id']}/meta")
        assert meta.status == 200
        assert meta.json() == {k: v for k, v in m.items() if k != "file"}

    # Read-only commands share the store with the running server ...
    r = run("ls", "--data", store)
    assert r.rc == 0 and [l.split()[0] for l in r.text.splitlines()] == [m["id"] for m in metas]
    assert run("verify", "--data", store).rc == 0
    # ... writing ones are refused while it holds it.
    r = run("put", "--data", store, files[0])
    assert r.rc == 1 and r.out == b""
    assert r.err.startswith("fastblocks put: store is in use by another process"), r.err
    assert r.err.count("\n") == 1


def test_http_upload_then_cli_get(tmp_path, server_factory):
    store = tmp_path / "data"
    srv = server_factory(data_dir=store)
    src = corpus_files("web")[0]
    resp = srv.upload(src.read_bytes(), filename=src.name)
    assert resp.status == 200, resp
    meta = resp.json()["metadata"]
    served = srv.request("GET", f"/images/{meta['block']}/{meta['offset']}/{meta['size']}").body
    assert srv.stop() == 0

    triple = f"{meta['block']}/{meta['offset']}/{meta['size']}"
    for addr in (meta["id"], triple):
        r = run("get", "--data", store, addr)
        assert r.rc == 0 and r.err == "", r
        assert r.out == served
    r = run("ls", "--data", store, "--json")
    assert json.loads(r.text) == meta
    r = run("rm", "--data", store, triple)
    assert (r.rc, r.text) == (0, f"deleted {triple}\n")
    r = run("get", "--data", store, meta["id"])
    assert r.rc == 1 and r.err.startswith("fastblocks get: image not found")
