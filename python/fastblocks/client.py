"""The client mode of BlockManager: the same calls over HTTP to one `fastblocks serve`.

A store directory has exactly one writer process. An application with several worker processes
(uvicorn --workers N, gunicorn) runs `fastblocks serve` once and gives each worker
`BlockManager(url=...)`. This module is the transport: one keep-alive connection per thread
(http.client from the standard library), over TCP or a Unix socket, reconnecting only when the
server has closed an idle connection. Responses map to the same exceptions as the embedded mode.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import urllib.parse
from typing import Any, Dict, List, Optional, Tuple, Union

from ._fastblocks import ImageError, StoreError, error_codes, make_error

Address = Union[str, Tuple[str, int, int]]

_ID = re.compile(r"[0-9a-f]{24}")
_BLOCK = re.compile(r"block_[0-9]{8}\.fbk")

# HTTP status -> (exception class, FB_E* name), the inverse of the server's table.
_STATUS: Dict[int, Tuple[type, str]] = {
    400: (ValueError, "EINVAL"),
    401: (PermissionError, "EAUTH"),
    403: (PermissionError, "EAUTH"),
    404: (FileNotFoundError, "ENOTFOUND"),
    411: (ValueError, "EINVAL"),
    413: (ImageError, "ELIMIT"),
    415: (ImageError, "EUNSUPPORTED"),
    422: (ImageError, "EIMAGE"),
}

# The server's error detail is "<fb_strerror text>: <engine detail>": the text names the code.
_MESSAGES = sorted(((msg, num) for num, _name, msg in error_codes()), key=lambda x: -len(x[0]))

_RETRYABLE = (http.client.RemoteDisconnected, http.client.CannotSendRequest,
              ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


def _error(exc_type: type, code: str, message: str) -> BaseException:
    exc = exc_type(message)
    exc.code = code  # type: ignore[attr-defined]
    return exc


class _UnixConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a Unix domain socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _check_addr(addr: Address) -> str:
    """The URL path of an address, after the same checks the embedded mode makes."""
    if isinstance(addr, str):
        if not _ID.fullmatch(addr):
            raise ValueError(f"invalid image id {addr!r}: an id is 24 lowercase hex digits")
        return "/images/" + addr
    if not isinstance(addr, tuple) or len(addr) != 3:
        raise TypeError("an image address is an id string or a (block, offset, size) tuple, "
                        f"not {type(addr).__name__}")
    block, offset, size = addr
    if not isinstance(block, str):
        raise TypeError(f"block must be a str, not {type(block).__name__}")
    for name, v in (("offset", offset), ("size", size)):
        if not isinstance(v, int):
            raise TypeError(f"{name} must be an int, not {type(v).__name__}")
        if v < 0 or v >= 2**63:
            raise ValueError(f"{name} must be between 0 and 2**63-1, got {v}")
    if not _BLOCK.fullmatch(block):
        raise _error(FileNotFoundError, "ENOTFOUND",
                     f"image not found: no block named {block!r} (block names look like "
                     "block_00000001.fbk)")
    return f"/images/{block}/{int(offset)}/{int(size)}"


class Client:
    """The Store interface of the extension, implemented over HTTP. Thread-safe."""

    def __init__(self, url: str, token: Optional[str] = None, timeout: float = 60.0) -> None:
        self.url = url
        self._timeout = timeout
        self._unix: Optional[str] = None
        if url.startswith("unix:"):
            path = url[len("unix:"):]
            if path.startswith("//"):
                path = path[2:]
            if not path:
                raise ValueError(f"no socket path in url {url!r}")
            self._unix = path
            self._host, self._port, self._prefix, self._https = "localhost", None, "", False
        else:
            u = urllib.parse.urlsplit(url)
            if u.scheme not in ("http", "https") or not u.hostname:
                raise ValueError(
                    f"url must look like http://HOST:PORT or unix:/path/to.sock, got {url!r}")
            self._https = u.scheme == "https"
            self._host, self._port = u.hostname, u.port
            self._prefix = u.path.rstrip("/")
        self._headers = {"Accept": "application/json, image/webp"}
        if token:
            self._headers["Authorization"] = "Bearer " + token
        self._tls = threading.local()
        self._lock = threading.Lock()
        self._conns: List[http.client.HTTPConnection] = []
        self.closed = False

    # ------------------------------------------------------------ connections
    def _new_connection(self) -> http.client.HTTPConnection:
        if self._unix is not None:
            return _UnixConnection(self._unix, self._timeout)
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=self._timeout)

    def _connection(self) -> Tuple[http.client.HTTPConnection, bool]:
        if self.closed:
            raise ValueError("I/O operation on a closed store")
        conn = getattr(self._tls, "conn", None)
        if conn is not None:
            return conn, False
        conn = self._new_connection()
        self._tls.conn = conn
        with self._lock:
            self._conns.append(conn)
        return conn, True

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        if getattr(self._tls, "conn", None) is conn:
            self._tls.conn = None
        with self._lock:
            if conn in self._conns:
                self._conns.remove(conn)

    def _request(self, method: str, path: str, body: Optional[bytes] = None,
                 headers: Optional[Dict[str, str]] = None
                 ) -> Tuple[int, http.client.HTTPResponse, bytes]:
        hdrs = dict(self._headers)
        if headers:
            hdrs.update(headers)
        for attempt in range(2):
            conn, fresh = self._connection()
            try:
                conn.request(method, self._prefix + path, body=body, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
            except _RETRYABLE as e:
                # A reused connection the server closed while idle: the request never reached
                # it, so one retry on a new connection is safe.
                self._drop(conn)
                if fresh or attempt > 0:
                    raise _error(StoreError, "EIO",
                                 f"connection to fastblocks server {self.url} lost: {e}") from e
                continue
            except OSError as e:
                self._drop(conn)
                raise _error(StoreError, "EIO",
                             f"cannot reach fastblocks server {self.url}: {e}") from e
            if resp.will_close:
                self._drop(conn)
            return resp.status, resp, data
        raise AssertionError("unreachable")

    def _json(self, status: int, data: bytes) -> Any:
        try:
            return json.loads(data)
        except ValueError:
            raise _error(StoreError, "EIO",
                         f"fastblocks server {self.url} answered {status} with a body that "
                         "is not JSON") from None

    def _raise_for(self, status: int, data: bytes) -> None:
        detail: Any = None
        try:
            detail = json.loads(data).get("detail")
        except (ValueError, AttributeError):
            pass
        if not detail:
            detail = data[:200].decode("utf-8", "replace") or http.client.responses.get(
                status, "error")
        detail = str(detail)
        where = f" (HTTP {status} from {self.url})"
        if status != 404:
            for msg, num in _MESSAGES:
                if detail.startswith(msg):
                    rest = detail[len(msg):].lstrip(":. ").rstrip(".")
                    raise make_error(num, (rest or msg) + where)
        exc_type, code = _STATUS.get(status, (StoreError, "EIO"))
        raise _error(exc_type, code, detail + where)

    # ------------------------------------------------------------ Store interface
    def put(self, data: bytes, **options: Any) -> Dict[str, Any]:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"a bytes-like object is required, not {type(data).__name__!r}")
        query = {}
        for k, v in options.items():
            if k not in ("quality", "effort", "lossless", "max_dimension", "keep_metadata"):
                raise TypeError(f"put() got an unexpected keyword argument {k!r}")
            if v is not None:
                query[k] = str(int(v)) if isinstance(v, bool) else str(v)
        path = "/images" + ("?" + urllib.parse.urlencode(query) if query else "")
        status, _, body = self._request("POST", path, bytes(data),
                                        {"Content-Type": "application/octet-stream"})
        if status not in (200, 201):
            self._raise_for(status, body)
        meta = self._json(status, body)
        if isinstance(meta, dict) and isinstance(meta.get("metadata"), dict):
            meta = meta["metadata"]
        return meta

    def get(self, addr: Address, with_meta: bool = False, cached_only: bool = False) -> Any:
        path = _check_addr(addr)
        if cached_only:
            return None  # the server's cache is behind HTTP: always a real request
        status, resp, body = self._request("GET", path)
        if status != 200:
            self._raise_for(status, body)
        if not with_meta:
            return body
        return body, self.stat(addr)

    def stat(self, addr: Address) -> Dict[str, Any]:
        path = _check_addr(addr)
        if not isinstance(addr, str):
            # Metadata is served by id; the ETag of a triple's image is its quoted id.
            status, resp, body = self._request("HEAD", path)
            if status != 200:
                self._raise_for(status, body)
            etag = (resp.getheader("ETag") or "").strip('"')
            if not _ID.fullmatch(etag):
                raise _error(StoreError, "EIO",
                             f"fastblocks server {self.url} sent no usable ETag for {path}")
            path = "/images/" + etag
        status, _, body = self._request("GET", path + "/meta")
        if status != 200:
            self._raise_for(status, body)
        return self._json(status, body)

    def delete(self, addr: Address) -> Dict[str, Any]:
        path = _check_addr(addr)
        status, _, body = self._request("DELETE", path)
        if status not in (200, 204):
            self._raise_for(status, body)
        if status == 204 or not body:
            return {}
        reply = self._json(status, body)
        if isinstance(reply, dict) and isinstance(reply.get("updated_metadata"), dict):
            return reply["updated_metadata"]
        return reply

    def stats(self) -> Dict[str, Any]:
        status, _, body = self._request("GET", "/healthz")
        if status != 200:
            self._raise_for(status, body)
        try:
            return json.loads(body)
        except ValueError:
            return {"status": body.decode("utf-8", "replace").strip()}

    def _unsupported(self, what: str) -> Any:
        raise _error(StoreError, "EINVAL",
                     f"{what} is not available in client mode: run `fastblocks {what}` "
                     "on the server's data directory")

    def blocks(self) -> Any:
        return self._unsupported("stat")

    def compact(self, threshold: float = -1.0) -> Any:
        return self._unsupported("compact")

    def verify(self) -> Any:
        return self._unsupported("verify")

    def close(self) -> None:
        self.closed = True
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            c.close()
