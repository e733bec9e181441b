"""One store, two front ends: what the `fastblocks` CLI writes, Python reads, and the other way
round, with compression and encryption; and the CLI refused while Python holds the store."""

import glob
import json
import os
import subprocess

import pytest

from fastblocks import BlockManager

BUILD = os.environ.get("FB_BUILD_DIR", "")
CORPUS = os.environ.get("FB_CORPUS_DIR", "")
FASTBLOCKS = os.path.join(BUILD, "fastblocks")

pytestmark = pytest.mark.skipif(not os.access(FASTBLOCKS, os.X_OK),
                                reason="the fastblocks binary is not built")


def cli(*args, key=None, check=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTBLOCKS_")}
    if key is not None:
        env["FASTBLOCKS_KEY"] = key.decode() if isinstance(key, bytes) else key
    out = subprocess.run([FASTBLOCKS, *args], capture_output=True, env=env, timeout=120)
    if check:
        assert out.returncode == 0, (args, out.stderr.decode())
    return out


def photos(n):
    files = sorted(glob.glob(os.path.join(CORPUS, "web", "*.jpg")))[:n]
    assert files
    return files


@pytest.mark.parametrize("compression", [False, True])
@pytest.mark.parametrize("encrypted", [False, True])
def test_cli_put_python_reads(tmp_path, compression, encrypted):
    key = BlockManager.generate_encryption_key() if encrypted else None
    data = str(tmp_path / "store")
    flags = ["--compression"] if compression else []
    out = cli("put", "--data", data, "--json", "--no-progress", *flags, *photos(3), key=key)
    metas = [json.loads(line) for line in out.stdout.decode().splitlines() if line.strip()]
    assert len(metas) == 3
    with BlockManager(data, compression=compression, encryption_key=key) as m:
        for meta in metas:
            by_triple = m.read_image_sync(meta["block"], meta["offset"], meta["size"])
            assert by_triple[:4] == b"RIFF" and len(by_triple) == meta["bytes"]
            assert m.read_sync(meta["id"]) == by_triple
            pymeta = m.meta_sync(meta["id"])
            for k in ("id", "block", "offset", "size", "width", "height", "bytes"):
                assert pymeta[k] == meta[k], k
        m.delete_sync(metas[0]["id"])
    # The CLI sees the Python delete, and reads the same bytes Python did.
    assert cli("get", "--data", data, metas[0]["id"], "-o", str(tmp_path / "x.webp"), key=key,
               check=False).returncode == 1
    target = tmp_path / "y.webp"
    cli("get", "--data", data, metas[1]["id"], "-o", str(target), key=key)
    with BlockManager(data, encryption_key=key) as m:
        assert target.read_bytes() == m.read_sync(metas[1]["id"])


@pytest.mark.parametrize("encrypted", [False, True])
def test_python_saves_cli_reads(tmp_path, encrypted):
    key = BlockManager.generate_encryption_key() if encrypted else None
    data = str(tmp_path / "store")
    with BlockManager(data, compression=True, encryption_key=key) as m:
        metas = []
        for path in photos(2):
            with open(path, "rb") as f:
                metas.append(m.save_image_sync(f.read()))
        expected = [m.read_sync(x["id"]) for x in metas]
    for meta, want in zip(metas, expected):
        for addr in (meta["id"], f"{meta['block']}/{meta['offset']}/{meta['size']}"):
            target = tmp_path / "out.webp"
            cli("get", "--data", data, addr, "-o", str(target), key=key)
            assert target.read_bytes() == want
    listed = cli("ls", "--data", data, "--json", key=key).stdout.decode()
    ids = {json.loads(line)["id"] for line in listed.splitlines() if line.strip()}
    assert ids == {x["id"] for x in metas}
    cli("verify", "--data", data, "--no-progress", key=key)
    if encrypted:
        # Without the key the CLI cannot read what Python encrypted.
        assert cli("get", "--data", data, metas[0]["id"], "-o", str(tmp_path / "z.webp"),
                   check=False).returncode == 1


def test_cli_writer_refused_while_python_holds_the_store(tmp_path):
    data = str(tmp_path / "store")
    with BlockManager(data):
        out = cli("put", "--data", data, "--no-progress", photos(1)[0], check=False)
        assert out.returncode == 1
        assert str(os.getpid()) in out.stderr.decode() or b"in use" in out.stderr
