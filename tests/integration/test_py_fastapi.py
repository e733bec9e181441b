"""FastAPI with fastblocks: the original README's app (examples/fastapi_app.py, verbatim but for
the key) and the ready router of fastblocks.fastapi, driven with FastAPI's TestClient."""

import glob
import importlib.util
import os

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fastblocks import BlockManager
from fastblocks.fastapi import CACHE_CONTROL, create_router

CORPUS = os.environ.get("FB_CORPUS_DIR", "")
SOURCE = os.environ.get("FB_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.fixture(scope="module")
def jpeg():
    path = sorted(glob.glob(os.path.join(CORPUS, "web", "*.jpg")))[0]
    with open(path, "rb") as f:
        return f.read()


def is_webp(data):
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def load_example(name):
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(SOURCE, "examples", "fastapi_app.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def readme_app(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the README's BlockManager uses ./blocks
    monkeypatch.setenv("FASTBLOCKS_KEY", BlockManager.generate_encryption_key().decode())
    monkeypatch.delenv("FASTBLOCKS_URL", raising=False)
    mod = load_example("fastapi_app_" + tmp_path.name)
    yield mod
    mod.manager.close()


def test_readme_app_upload_read_delete(readme_app, jpeg, tmp_path):
    client = TestClient(readme_app.app)
    r = client.post("/upload/", files={"file": ("photo.jpg", jpeg, "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["message"] == "Image uploaded successfully"
    meta = body["metadata"]
    assert {"block", "offset", "size", "id", "width", "height", "bytes"} <= set(meta)
    assert os.path.isdir(tmp_path / "blocks")

    url = f"/images/{meta['block']}/{meta['offset']}/{meta['size']}"
    r = client.get(url)
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/webp"
    assert is_webp(r.content) and len(r.content) == meta["bytes"]

    r = client.delete(url)
    assert r.status_code == 200
    body = r.json()
    assert body["message"] == "Image deleted successfully"
    assert body["updated_metadata"]["block"] == meta["block"]
    assert body["updated_metadata"]["dead_records"] >= 1

    r = client.get(url)
    assert r.status_code == 404
    assert r.json() == {"detail": "Image not found"}
    # An address that never existed, and a traversal attempt, are 404 too.
    assert client.get(f"/images/{meta['block']}/{meta['offset'] + 8}/{meta['size']}"
                      ).status_code == 404
    assert client.get("/images/..%2F..%2Fetc%2Fpasswd/0/10").status_code == 404


# ----------------------------------------------------------------------------- the router

@pytest.fixture
def router_client(tmp_path):
    m = BlockManager(str(tmp_path / "store"), encryption_key=BlockManager.generate_encryption_key())
    app = FastAPI()
    app.include_router(create_router(m))
    yield TestClient(app), m
    m.close()


def test_router_id_endpoints(router_client, jpeg):
    client, _ = router_client
    r = client.post("/images", content=jpeg, headers={"content-type": "image/jpeg"})
    assert r.status_code == 201, r.text
    meta = r.json()
    assert r.headers["location"] == f"/images/{meta['id']}"

    r = client.get(r.headers["location"])
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/webp"
    assert r.headers["cache-control"] == CACHE_CONTROL
    assert r.headers["etag"] == f'"{meta["id"]}"'
    assert int(r.headers["content-length"]) == meta["bytes"] == len(r.content)
    assert is_webp(r.content)
    image = r.content

    r = client.get(f"/images/{meta['id']}", headers={"if-none-match": f'"{meta["id"]}"'})
    assert r.status_code == 304 and r.content == b""
    assert r.headers["etag"] == f'"{meta["id"]}"'
    r = client.get(f"/images/{meta['id']}", headers={"if-none-match": '"other", W/"x"'})
    assert r.status_code == 200 and r.content == image

    r = client.head(f"/images/{meta['id']}")
    assert r.status_code == 200 and int(r.headers["content-length"]) == len(image)

    r = client.get(f"/images/{meta['id']}/meta")
    assert r.status_code == 200 and r.json() == meta

    # The seed triple of the same image serves the same bytes and ETag.
    r = client.get(f"/images/{meta['block']}/{meta['offset']}/{meta['size']}")
    assert r.status_code == 200 and r.content == image
    assert r.headers["etag"] == f'"{meta["id"]}"'

    r = client.delete(f"/images/{meta['id']}")
    assert r.status_code == 200
    assert r.json()["updated_metadata"]["block"] == meta["block"]
    for path in (f"/images/{meta['id']}", f"/images/{meta['id']}/meta"):
        r = client.get(path)
        assert r.status_code == 404 and r.json() == {"detail": "Image not found"}
    assert client.delete(f"/images/{meta['id']}").status_code == 404
    assert client.get("/images/not-an-id").status_code == 404


def test_router_uploads_and_errors(router_client, jpeg):
    client, _ = router_client
    r = client.post("/images?max_dimension=64&quality=60",
                    files={"file": ("a.jpg", jpeg, "image/jpeg")})
    assert r.status_code == 201, r.text
    assert max(r.json()["width"], r.json()["height"]) == 64

    r = client.post("/upload/", files={"file": ("a.jpg", jpeg, "image/jpeg")})
    assert r.status_code == 200 and r.json()["message"] == "Image uploaded successfully"
    meta = r.json()["metadata"]
    r = client.delete(f"/images/{meta['block']}/{meta['offset']}/{meta['size']}")
    assert r.status_code == 200 and r.json()["message"] == "Image deleted successfully"
    r = client.delete(f"/images/{meta['block']}/{meta['offset']}/{meta['size']}")
    assert r.status_code == 404

    r = client.post("/images", content=b"plain text, not an image")
    assert r.status_code == 415 and "detail" in r.json()
    r = client.post("/images", content=jpeg[:5000])
    assert r.status_code == 422 and "detail" in r.json()
    r = client.post("/upload/", files={"file": ("x.txt", b"hello", "text/plain")})
    assert r.status_code == 415
    assert client.post("/images", content=b"").status_code == 400
    assert client.post("/images?quality=high", content=jpeg).status_code == 400
    assert client.post("/images?quality=150", content=jpeg).status_code in (400, 422)


def test_env_configured_router(tmp_path, monkeypatch, jpeg):
    monkeypatch.delenv("FASTBLOCKS_URL", raising=False)
    monkeypatch.setenv("FASTBLOCKS_DATA", str(tmp_path / "envstore"))
    monkeypatch.setenv("FASTBLOCKS_KEY", BlockManager.generate_encryption_key().decode())
    r = create_router()
    app = FastAPI()
    app.include_router(r, prefix="/media")
    client = TestClient(app)
    resp = client.post("/media/images", content=jpeg)
    assert resp.status_code == 201, resp.text
    assert resp.headers["location"].startswith("/media/images/")
    assert is_webp(client.get(resp.headers["location"]).content)
    m = r.get_manager()
    assert m.block_dir == str(tmp_path / "envstore")
    m.close()
