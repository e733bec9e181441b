"""Shared pytest fixtures: the real `fastblocks serve` binary on loopback.

`server` starts $FB_BUILD_DIR/fastblocks serve on 127.0.0.1 port 0 with a
fresh data directory, reads the address it prints ("fastblocks: listening
on http://127.0.0.1:PORT"), and stops it with SIGTERM after the test (the
exit status must be 0). `server_factory` starts servers with extra flags
or environment (and can restart one on the same data directory).

Other suites may import the helpers: `from conftest import Server,
multipart_body, corpus_files`.
"""

import http.client
import json
import os
import pathlib
import re
import select
import signal
import socket
import subprocess
import time
import uuid

import pytest

BUILD_DIR = pathlib.Path(os.environ.get("FB_BUILD_DIR", "build"))
BINARY = BUILD_DIR / "fastblocks"
CORPUS_DIR = pathlib.Path(os.environ.get("FB_CORPUS_DIR", BUILD_DIR / "corpus"))

LISTEN_RE = re.compile(r"^fastblocks: listening on (\S+)$")


def corpus_files(subset, patterns=("*.jpg", "*.jpeg", "*.png", "*.gif", "*.webp")):
    """Sorted real images of $FB_CORPUS_DIR/<subset> (skips the test if none)."""
    root = CORPUS_DIR / subset
    found = sorted(p for pat in patterns for p in root.rglob(pat))
    if not found:
        pytest.skip(f"no images in {root} (the setup/corpus fixture builds them)")
    return found


def multipart_body(data, field="file", filename="image.jpg", content_type="image/jpeg",
                   extra_fields=None):
    """A multipart/form-data body; returns (body bytes, Content-Type value)."""
    boundary = "fbtest" + uuid.uuid4().hex
    parts = []
    for name, value in (extra_fields or {}).items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value + b"\r\n")
    parts.append(
        (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
         f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n').encode()
        + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a Unix domain socket."""

    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.body[:200]!r}>"


class Server:
    """One `fastblocks serve` process."""

    def __init__(self, data_dir, args=(), env=None, listen="127.0.0.1:0", log_path=None):
        self.data_dir = pathlib.Path(data_dir)
        self.args = list(args)
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.listen = listen
        self.log_path = pathlib.Path(log_path or f"{self.data_dir}.stderr.log")
        self.proc = None
        self.url = None
        self.host = None
        self.port = None
        self.unix_path = None

    def start(self, timeout=60):
        if not BINARY.exists():
            pytest.skip(f"{BINARY} is not built")
        self._log = open(self.log_path, "ab")
        cmd = [str(BINARY), "serve", "--data", str(self.data_dir), "--listen", self.listen,
               *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log,
                                     env=self.env)
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                line += chunk
                if b"\n" in line:
                    break
            elif self.proc.poll() is not None:
                break
        first = line.split(b"\n", 1)[0].decode(errors="replace")
        m = LISTEN_RE.match(first)
        if not m:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"server did not start: stdout={line!r} stderr={self.log()}")
        self.url = m.group(1)
        if self.url.startswith("unix:"):
            self.unix_path = self.url[5:]
        else:
            hostport = self.url[len("http://"):]
            host, port = hostport.rsplit(":", 1)
            self.host = host.strip("[]")
            self.port = int(port)
        return self

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def connection(self, timeout=30):
        """A new keep-alive connection."""
        if self.unix_path:
            return UnixHTTPConnection(self.unix_path, timeout=timeout)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def raw_socket(self, timeout=10):
        if self.unix_path:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            s.connect(self.unix_path)
        else:
            s = socket.create_connection((self.host, self.port), timeout=timeout)
        return s

    def request(self, method, path, body=None, headers=None, conn=None):
        """One request; on a new connection unless conn is given."""
        own = conn is None
        c = conn or self.connection()
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        finally:
            if own:
                c.close()

    def upload(self, data, path="/upload/", headers=None, **kw):
        body, ctype = multipart_body(data, **kw)
        h = {"Content-Type": ctype}
        h.update(headers or {})
        return self.request("POST", path, body=body, headers=h)

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Stops the server; returns its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"server did not stop within {timeout}s: {self.log()}")
        self.proc.stdout.close()
        self._log.close()
        rc = self.proc.returncode
        self.proc = None
        return rc


@pytest.fixture
def server_factory(tmp_path):
    """make(args=(), env=None, data_dir=None, listen=...) -> a started Server.

    Every server still running at the end of the test is stopped and must
    exit with status 0.
    """
    started = []

    def make(args=(), env=None, data_dir=None, listen="127.0.0.1:0", quiet=False):
        n = len(started)
        d = pathlib.Path(data_dir) if data_dir else tmp_path / f"data{n}"
        a = list(args) + (["--quiet"] if quiet else [])
        s = Server(d, a, env, listen, log_path=tmp_path / f"server{n}.log")
        started.append(s)
        return s.start()

    yield make
    for s in started:
        if s.proc is not None:
            rc = s.stop()
            assert rc == 0, f"server exited with {rc}: {s.log()[-3000:]}"


@pytest.fixture
def server(server_factory):
    """A running server on 127.0.0.1 with a fresh store and default options."""
    return server_factory(args=["--timeout", "5"])


@pytest.fixture(scope="session")
def jpeg_bytes():
    """A real JPEG photo from the corpus (web/)."""
    return corpus_files("web", ("*.jpg", "*.jpeg"))[0].read_bytes()
