"""BlockManager: the original FastBlocks API over libfastblocks (or over `fastblocks serve`).

The engine calls release the GIL and run on a dedicated thread pool, so the event loop keeps
serving other requests while an upload is decoded and encoded. Reads of images that are in the
engine's cache are answered without leaving the event loop: a cache hit is a memory copy, far
cheaper than a hop through the thread pool.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterable, Optional, Tuple, TypeVar, Union

from . import _fastblocks

_T = TypeVar("_T")

Address = Union[str, Tuple[str, int, int]]
Key = Union[bytes, str]

_DURABILITY = {
    "always": _fastblocks.DURABILITY_ALWAYS,
    "batch": _fastblocks.DURABILITY_BATCH,
    "none": _fastblocks.DURABILITY_NONE,
}

# Environment variable that turns every BlockManager of a process into a client of a running
# `fastblocks serve`, so an application written for the embedded mode runs unchanged under
# several worker processes.
URL_ENV = "FASTBLOCKS_URL"


# How much lower than the application's threads the pool runs (a nice increment). Conversions
# are CPU-bound for tens of milliseconds; at a lower priority the scheduler lets the event loop
# thread preempt them as soon as it wakes, so a save does not delay other requests' callbacks.
# libvips starts no threads of its own for a conversion (src/image.c sets its concurrency to 1
# and pulls the pixels in the calling thread; strace shows no clone() during saves), so every
# CPU-heavy thread of a save is one of these. (SCHED_IDLE instead cut the loop's worst ticks a
# little more, but starves uploads outright whenever the application keeps the cores busy.)
_POOL_NICE = 10


def _lower_thread_priority() -> None:
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + _POOL_NICE)
    except (AttributeError, OSError):
        pass  # no per-thread priorities here: the pool simply runs at the caller's


# How long opening waits for the pool's threads to start (they start in microseconds unless the
# machine is starved; a pool that cannot start at all is an error, not a hang).
_POOL_START_TIMEOUT = 30.0


def _start_pool(workers: Optional[int], local: bool) -> ThreadPoolExecutor:
    """A thread pool whose threads all run already.

    By default a local store gets one thread per core: its calls are conversions (CPU-bound,
    more threads only queue for the cores) and short reads. With more threads than cores, a
    pool thread that finished its conversion and holds the GIL waits behind the other pool
    threads for a core while the event loop waits for the GIL: with 6 threads on 2 cores the
    loop's ticker p99 was 0.9-1.1 ms during saves, with 2 threads 0.4-0.7 ms (measured). A
    client waits on the network, so it keeps Python's default, min(32, cpus + 4).

    ThreadPoolExecutor starts its threads lazily, inside submit(), and Thread.start() waits
    until the new thread has been scheduled. Called from a coroutine, that is on the event loop
    thread, each of the first concurrent saves cost the loop 0.3-0.5 ms of CPU and, on a busy
    machine, up to ~20 ms of waiting for the new thread to run (measured). Starting them here, when the
    store opens, moves that cost to the one moment that does disk I/O anyway. A barrier keeps
    every thread busy until all have started, so each submit below starts a new one.
    """
    cpus = os.cpu_count() or 1
    n = workers if workers is not None else (cpus if local else min(32, cpus + 4))
    executor = ThreadPoolExecutor(max_workers=n, thread_name_prefix="fastblocks",
                                  initializer=_lower_thread_priority)
    try:
        barrier = threading.Barrier(n)
        started = [executor.submit(barrier.wait, _POOL_START_TIMEOUT) for _ in range(n)]
        for f in started:
            f.result()
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    return executor


def _int_arg(name: str, value: Any, low: int, high: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def _key_text(name: str, key: Key) -> str:
    if isinstance(key, bytes):
        try:
            return key.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(
                f"{name} is not a Fernet key (not ASCII). Make one with "
                "BlockManager.generate_encryption_key()."
            ) from None
    if isinstance(key, str):
        return key
    raise TypeError(f"{name} must be bytes or str, not {type(key).__name__}")


def _address(id_or_block: Union[str, Tuple[str, int, int]], offset: Optional[int],
             size: Optional[int]) -> Address:
    if offset is None and size is None:
        return id_or_block
    if offset is None or size is None:
        raise TypeError("give an id, or all of block, offset and size")
    return (id_or_block, offset, size)  # type: ignore[return-value]


class BlockManager:
    """Stores images as WebP in block files; the original FastBlocks API.

    The positional parameters and their defaults are the original's. `cache_size` is the number
    of images the cache may hold (the original counted whole blocks); `cache_bytes` caps its
    memory. `block_dir` is the store directory (it holds the store marker and blocks/).

    Keyword-only extras: `durability` ('always': a save returns once the image is on disk;
    'batch'; 'none'), WebP settings (`quality`, `effort`, `lossless`, `max_dimension`,
    `keep_metadata`), `decryption_keys` (older keys still accepted for reading),
    `compression_level`, `read_only`, `workers` (threads of the pool that runs engine calls),
    and `url` with `token` for the client mode: with `url="http://127.0.0.1:8000"` or
    `url="unix:/run/fastblocks.sock"` the same API talks to `fastblocks serve` and the store
    options are the server's. Without `url`, the environment variable FASTBLOCKS_URL, when set,
    selects the client mode too.
    """

    def __init__(
        self,
        block_dir: Union[str, "os.PathLike[str]"] = "blocks",
        max_block_size: int = 10 * 1024 * 1024,
        compression: bool = False,
        encryption_key: Optional[Key] = None,
        cache_size: int = 5,
        *,
        durability: str = "always",
        quality: int = 80,
        effort: int = 4,
        lossless: bool = False,
        max_dimension: int = 0,
        keep_metadata: bool = False,
        cache_bytes: int = 64 * 1024 * 1024,
        decryption_keys: Iterable[Key] = (),
        compression_level: int = 3,
        read_only: bool = False,
        workers: Optional[int] = None,
        url: Optional[str] = None,
        token: Optional[str] = None,
        timeout: float = 60.0,
    ) -> None:
        self._closed = True  # until the store is open, so __del__/close() are safe
        self.block_dir = os.fspath(block_dir)
        self.max_block_size = max_block_size
        self.compression = compression
        self.cache_size = cache_size
        if workers is not None:
            _int_arg("workers", workers, 1)
        if url is None:
            url = os.environ.get(URL_ENV) or None
        self.url = url
        if url is not None:
            from .client import Client

            self._store: Any = Client(url, token=token, timeout=timeout)
            self._local = False
        else:
            self._store = self._open_local(
                max_block_size, compression, encryption_key, cache_size, durability, quality,
                effort, lossless, max_dimension, keep_metadata, cache_bytes, decryption_keys,
                compression_level, read_only)
            self._local = True
        # Without a cache there is nothing to answer on the caller's thread.
        self._probe = self._local and cache_size > 0 and cache_bytes > 0
        try:
            self._executor = _start_pool(workers, self._local)
        except BaseException:
            self._store.close()
            raise
        self._closed = False

    def _open_local(self, max_block_size: int, compression: bool, encryption_key: Optional[Key],
                    cache_size: int, durability: str, quality: int, effort: int, lossless: bool,
                    max_dimension: int, keep_metadata: bool, cache_bytes: int,
                    decryption_keys: Iterable[Key], compression_level: int,
                    read_only: bool) -> Any:
        _int_arg("max_block_size", max_block_size, 1)
        _int_arg("cache_size", cache_size, 0)
        _int_arg("cache_bytes", cache_bytes, 0)
        _int_arg("quality", quality, 0, 100)
        _int_arg("effort", effort, 0, 6)
        _int_arg("max_dimension", max_dimension, 0, 2**32 - 1)
        _int_arg("compression_level", compression_level, -7, 22)
        if durability not in _DURABILITY:
            raise ValueError(f"durability must be 'always', 'batch' or 'none', got {durability!r}")
        if isinstance(decryption_keys, (str, bytes)):
            raise TypeError("decryption_keys must be a sequence of keys, not a single key")
        keys = []
        # The original accepted any falsy key as "no encryption".
        if encryption_key:
            keys.append(_key_text("encryption_key", encryption_key))
        for i, k in enumerate(decryption_keys):
            keys.append(_key_text(f"decryption_keys[{i}]", k))
        if not encryption_key and keys:
            raise ValueError("decryption_keys need an encryption_key (the key new images use)")
        return _fastblocks.Store(
            self.block_dir,
            max_block_size=max_block_size,
            durability=_DURABILITY[durability],
            compression=bool(compression),
            compression_level=compression_level,
            keys=keys,
            # The original cached cache_size blocks; here it counts images. 0 disables caching.
            cache_bytes=cache_bytes if cache_size > 0 else 0,
            cache_entries=cache_size,
            read_only=bool(read_only),
            quality=quality,
            effort=effort,
            lossless=bool(lossless),
            max_dimension=max_dimension,
            keep_metadata=bool(keep_metadata),
        )

    # ---------------------------------------------------------------- keys
    @staticmethod
    def generate_encryption_key() -> bytes:
        """A new random Fernet key (url-safe base64 of 32 bytes), like Fernet.generate_key()."""
        return _fastblocks.keygen()

    # ---------------------------------------------------------------- plumbing
    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("I/O operation on a closed BlockManager")

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        self._check_open()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def _read_inline(self, addr: Address, with_meta: bool = False) -> Any:
        """The cached image, or None: answered on the caller's thread, no disk access."""
        self._check_open()
        if not self._probe:
            return None
        return self._store.get(addr, with_meta, True)

    # ---------------------------------------------------------------- seed API (async)
    async def save_image(self, image_data: bytes, **options: Any) -> Dict[str, Any]:
        """Converts an image to WebP and stores it. Returns its metadata: block, offset, size
        (the original's address), id, width, height, bytes, content_type.

        Per-call `quality`, `effort`, `lossless`, `max_dimension`, `keep_metadata` override the
        manager's settings. Raises ImageError for input that is not a usable image."""
        return await self._run(self._save, image_data, options)

    async def read_image(self, block: str, offset: int, size: int) -> bytes:
        """The WebP bytes of the image at the original address (block, offset, size).
        FileNotFoundError if there is no such image."""
        addr = (block, offset, size)
        data = self._read_inline(addr)
        if data is None:
            data = await self._run(self._store.get, addr)
        return data

    async def delete_image(self, block: str, offset: int, size: int) -> Dict[str, Any]:
        """Deletes the image; returns the updated statistics of its block. No other image's
        address changes."""
        return await self._run(self._store.delete, (block, offset, size))

    # ---------------------------------------------------------------- id API (async)
    async def save(self, image_data: bytes, **options: Any) -> Dict[str, Any]:
        """Same as save_image (the metadata's "id" names the image)."""
        return await self.save_image(image_data, **options)

    async def read(self, id_or_block: Union[str, Tuple[str, int, int]],
                   offset: Optional[int] = None, size: Optional[int] = None) -> bytes:
        """The WebP bytes of an image given by id (or by block, offset, size)."""
        addr = _address(id_or_block, offset, size)
        data = self._read_inline(addr)
        if data is None:
            data = await self._run(self._store.get, addr)
        return data

    async def read_with_meta(self, id_or_block: Union[str, Tuple[str, int, int]],
                             offset: Optional[int] = None,
                             size: Optional[int] = None) -> Tuple[bytes, Dict[str, Any]]:
        """(WebP bytes, metadata) of an image."""
        addr = _address(id_or_block, offset, size)
        hit = self._read_inline(addr, True)
        if hit is None:
            hit = await self._run(self._store.get, addr, True)
        return hit

    async def delete(self, id_or_block: Union[str, Tuple[str, int, int]],
                     offset: Optional[int] = None, size: Optional[int] = None) -> Dict[str, Any]:
        """Deletes an image by id (or triple); returns its block's updated statistics."""
        return await self._run(self._store.delete, _address(id_or_block, offset, size))

    async def meta(self, id_or_block: Union[str, Tuple[str, int, int]],
                   offset: Optional[int] = None, size: Optional[int] = None) -> Dict[str, Any]:
        """The metadata of an image, without reading it."""
        addr = _address(id_or_block, offset, size)
        if self._local:
            # An index lookup in memory: no reason to leave the event loop.
            self._check_open()
            return self._store.stat(addr)
        return await self._run(self._store.stat, addr)

    # ---------------------------------------------------------------- sync API
    def _save(self, image_data: bytes, options: Dict[str, Any]) -> Dict[str, Any]:
        return self._store.put(image_data, **options)

    def save_image_sync(self, image_data: bytes, **options: Any) -> Dict[str, Any]:
        self._check_open()
        return self._save(image_data, options)

    def read_image_sync(self, block: str, offset: int, size: int) -> bytes:
        self._check_open()
        return self._store.get((block, offset, size))

    def delete_image_sync(self, block: str, offset: int, size: int) -> Dict[str, Any]:
        self._check_open()
        return self._store.delete((block, offset, size))

    def read_sync(self, id_or_block: Union[str, Tuple[str, int, int]],
                  offset: Optional[int] = None, size: Optional[int] = None) -> bytes:
        self._check_open()
        return self._store.get(_address(id_or_block, offset, size))

    def delete_sync(self, id_or_block: Union[str, Tuple[str, int, int]],
                    offset: Optional[int] = None, size: Optional[int] = None) -> Dict[str, Any]:
        self._check_open()
        return self._store.delete(_address(id_or_block, offset, size))

    def meta_sync(self, id_or_block: Union[str, Tuple[str, int, int]],
                  offset: Optional[int] = None, size: Optional[int] = None) -> Dict[str, Any]:
        self._check_open()
        return self._store.stat(_address(id_or_block, offset, size))

    def stats(self) -> Dict[str, Any]:
        """Whole-store and cache statistics."""
        self._check_open()
        return self._store.stats()

    def blocks(self) -> Any:
        """Statistics of every block file (embedded mode)."""
        self._check_open()
        return self._store.blocks()

    def compact(self, threshold: float = -1.0) -> Dict[str, Any]:
        """Compacts blocks whose dead ratio reaches threshold (the engine's default if < 0)."""
        self._check_open()
        return self._store.compact(threshold)

    def verify(self) -> Dict[str, Any]:
        """Checks every record of the store; {"ok": bool, "problems": [...], ...}."""
        self._check_open()
        return self._store.verify()

    # ---------------------------------------------------------------- lifetime
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Waits for running calls, syncs and closes the store. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=True)
        self._store.close()

    async def aclose(self) -> None:
        """close() without blocking the event loop."""
        if self._closed:
            return
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    def __enter__(self) -> "BlockManager":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> "BlockManager":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        where = f"url={self.url!r}" if self.url else f"block_dir={self.block_dir!r}"
        state = " closed" if self._closed else ""
        return f"<fastblocks.BlockManager {where}{state}>"
