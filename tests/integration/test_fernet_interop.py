"""Fernet interoperability between FastBlocks' codec and Python's cryptography.

FastBlocks stores binary Fernet tokens; base64url of one must be a token
that Debian's python3-cryptography decrypts, and the binary form of a token
Python made must decrypt in FastBlocks. The C side is driven through
tests/tools/fernet_tool (keys passed in the environment, as the store takes
them: never on a command line).
"""
import base64
import json
import os
import pathlib
import subprocess
import time

import pytest
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

BUILD = pathlib.Path(os.environ.get("FB_BUILD_DIR", "../../build"))
SOURCE = pathlib.Path(os.environ.get("FB_SOURCE_DIR", "../.."))
TOOL = BUILD / "tests" / "tools" / "fernet_tool"
CORPUS = pathlib.Path(os.environ.get("FB_CORPUS_DIR", "/nonexistent"))

SIZES = [0, 1, 15, 16, 17, 31, 32, 33, 255, 1000, 4096, 65536 + 3, 1 << 20]


def tool(*args, keys=None, data=b"", check=True):
    env = dict(os.environ)
    env.pop("FB_FERNET_KEYS", None)
    if keys is not None:
        env["FB_FERNET_KEYS"] = ",".join(k.decode() if isinstance(k, bytes) else k for k in keys)
    p = subprocess.run([str(TOOL), *args], input=data, env=env, capture_output=True, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError(f"fernet_tool {args} failed: {p.stderr.decode()}")
    return p


def b64(raw):
    return base64.urlsafe_b64encode(raw)


def unb64(token):
    return base64.urlsafe_b64decode(token)


def payload(n, seed=1):
    # Deterministic, not compressible, not all one byte.
    out = bytearray()
    x = seed
    while len(out) < n:
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        out += x.to_bytes(8, "little")
    return bytes(out[:n])


def real_webp():
    files = sorted((CORPUS / "all" / "webp").glob("*.webp")) if CORPUS.is_dir() else []
    return files[0].read_bytes() if files else payload(30000, 7)


@pytest.fixture(scope="module", autouse=True)
def built_tool():
    if not TOOL.exists():
        pytest.fail(f"{TOOL} is not built (cmake --build the build directory first)")


def test_keygen_is_a_python_key():
    for _ in range(5):
        key = tool("keygen").stdout.strip()
        assert len(key) == 44
        Fernet(key)  # raises ValueError if not a valid key
        assert len(unb64(key)) == 32


def test_python_keys_pass_our_check():
    for _ in range(20):
        key = Fernet.generate_key()
        assert tool("check", data=key + b"\n", check=False).returncode == 0


@pytest.mark.parametrize(
    "key",
    [
        b"your-encryption-key-here",
        b"",
        b"short",
        Fernet.generate_key()[:43],
        base64.urlsafe_b64encode(b"\x00" * 31),
        base64.urlsafe_b64encode(b"\x00" * 33),
    ],
)
def test_keys_python_rejects_we_reject(key):
    with pytest.raises((ValueError, TypeError)):
        Fernet(key)
    p = tool("check", data=key + b"\n", check=False)
    assert p.returncode == 1
    err = p.stderr.decode()
    assert err.startswith("EKEY:")
    assert "fastblocks keygen" in err and "generate_encryption_key()" in err
    if key:
        assert key.decode() not in err


def test_we_are_stricter_than_python_about_key_text():
    """Python's base64 decoder skips junk after the padding and characters
    outside the alphabet; a key that only decodes that way is refused here,
    so every key FastBlocks accepts is one Python accepts too."""
    key = Fernet.generate_key()
    for sloppy in (key + b"A", key[:20] + b"\n" + key[20:]):
        Fernet(sloppy)
        p = tool("check", data=sloppy + b"\n", check=False)
        assert p.returncode == 1 and p.stderr.decode().startswith("EKEY:")


@pytest.mark.parametrize("n", SIZES)
def test_python_decrypts_ours(n):
    key = Fernet.generate_key()
    data = payload(n, n)
    raw = tool("encrypt", "1700000000", keys=[key], data=data).stdout
    assert len(raw) == 57 + 16 * (n // 16 + 1)
    token = b64(raw)
    assert Fernet(key).decrypt(token) == data
    assert Fernet(key).extract_timestamp(token) == 1700000000


@pytest.mark.parametrize("n", SIZES)
def test_we_decrypt_pythons(n):
    key = Fernet.generate_key()
    data = payload(n, n + 100)
    token = Fernet(key).encrypt(data)
    p = tool("decrypt", keys=[key], data=unb64(token))
    assert p.stdout == data
    assert p.stderr.decode().strip() == "key 0"
    ts = int(tool("timestamp", keys=[key], data=unb64(token)).stdout)
    assert abs(ts - time.time()) < 120


def test_real_webp_both_ways():
    key = Fernet.generate_key()
    webp = real_webp()
    ours = b64(tool("encrypt", keys=[key], data=webp).stdout)
    assert Fernet(key).decrypt(ours) == webp
    theirs = Fernet(key).encrypt(webp)
    assert tool("decrypt", keys=[key], data=unb64(theirs)).stdout == webp


def test_rotation_matches_multifernet():
    a, b = Fernet.generate_key(), Fernet.generate_key()
    data = payload(777, 3)
    # A record written under the old key B reads with the ring [A, B] ...
    old = Fernet(b).encrypt_at_time(data, 1600000000)
    p = tool("decrypt", keys=[a, b], data=unb64(old))
    assert p.stdout == data and p.stderr.decode().strip() == "key 1"
    # ... and what the ring writes is under A, which Python's MultiFernet agrees with.
    new = b64(tool("encrypt", "1600000000", keys=[a, b], data=data).stdout)
    assert Fernet(a).decrypt(new) == data
    with pytest.raises(InvalidToken):
        Fernet(b).decrypt(new)
    # Python's rotate keeps the timestamp; we read its result with A alone.
    rotated = MultiFernet([Fernet(a), Fernet(b)]).rotate(old)
    assert tool("decrypt", keys=[a], data=unb64(rotated)).stdout == data
    assert tool("timestamp", keys=[a], data=unb64(rotated)).stdout.strip() == b"1600000000"
    # Without B, the old record does not read.
    p = tool("decrypt", keys=[a], data=unb64(old), check=False)
    assert p.returncode == 1 and p.stderr.decode().startswith("EINTEGRITY:")


def test_wrong_key_and_tampering_fail_on_both_sides():
    key, other = Fernet.generate_key(), Fernet.generate_key()
    data = b"an image that must not leak"
    raw = tool("encrypt", keys=[key], data=data).stdout
    p = tool("decrypt", keys=[other], data=raw, check=False)
    assert p.returncode == 1 and p.stdout == b""
    for i in range(len(raw)):
        bad = bytearray(raw)
        bad[i] ^= 0x40
        bad = bytes(bad)
        p = tool("decrypt", keys=[key], data=bad, check=False)
        assert p.returncode == 1 and p.stdout == b"", f"byte {i}"
        assert p.stderr.decode().startswith("EINTEGRITY:")
        with pytest.raises(InvalidToken):
            Fernet(key).decrypt(b64(bad))


def test_spec_vectors_agree_with_python():
    """The vectors the C unit test checks are the ones Python agrees with."""
    vectors = SOURCE / "tests" / "data" / "fernet"
    gen = json.loads((vectors / "generate.json").read_text())[0]
    lower = {k.lower(): v for k, v in gen.items()}
    token = lower["token"].encode()
    assert Fernet(lower["secret"]).decrypt(token) == lower["src"].encode()
    p = tool("decrypt", keys=[lower["secret"]], data=unb64(token))
    assert p.stdout == lower["src"].encode()
