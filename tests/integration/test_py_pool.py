"""The BlockManager's thread pool: every thread runs from the moment the store opens.

ThreadPoolExecutor starts threads lazily inside submit(), and Thread.start() waits until the
new thread has run; called from save_image, that wait happened on the event loop (0.3-0.5 ms
of CPU per thread, up to ~20 ms on a busy machine). These tests check the structure that rules
it out, not a timing: the pool's threads exist, at their lower priority, before the first call,
and no thread is started by a coroutine of the package.

Runs with PYTHONPATH=$FB_BUILD_DIR/python and the image corpus ($FB_CORPUS_DIR), like the other
test_py_* files.
"""

import asyncio
import glob
import os
import threading

import pytest

from fastblocks import BlockManager

CORPUS = os.environ.get("FB_CORPUS_DIR", "")


@pytest.fixture(scope="module")
def photos():
    paths = sorted(glob.glob(os.path.join(CORPUS, "web", "*.jpg")))[:4]
    assert len(paths) == 4, f"no web photos in {CORPUS}"
    out = []
    for p in paths:
        with open(p, "rb") as f:
            out.append(f.read())
    return out


def pool_threads():
    return [t for t in threading.enumerate() if t.name.startswith("fastblocks")]


def nice_of(native_id):
    with open(f"/proc/self/task/{native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[16])  # field 19 of proc(5), counted after "pid (comm)"


def test_pool_threads_run_from_open_at_lower_priority(tmp_path):
    before = len(pool_threads())
    m = BlockManager(str(tmp_path / "s"), workers=3)
    try:
        threads = pool_threads()
        assert len(threads) - before == 3
        own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        for t in threads:
            assert t.is_alive()
            assert nice_of(t.native_id) == min(own + 10, 19)
    finally:
        m.close()
    assert len(pool_threads()) == before


def test_default_pool_size_is_started_too(tmp_path):
    # A local store: one thread per core (conversions are CPU-bound).
    before = len(pool_threads())
    with BlockManager(str(tmp_path / "s")):
        assert len(pool_threads()) - before == (os.cpu_count() or 1)


def test_saves_start_no_thread_on_the_loop(tmp_path, photos, monkeypatch):
    started = []
    real_start = threading.Thread.start

    def recording_start(self):
        started.append((self.name, threading.get_native_id()))
        return real_start(self)

    async def main():
        async with BlockManager(str(tmp_path / "s"), workers=4) as m:
            monkeypatch.setattr(threading.Thread, "start", recording_start)
            try:
                metas = await asyncio.gather(*(m.save_image(p) for p in photos * 2))
            finally:
                monkeypatch.setattr(threading.Thread, "start", real_start)
            return metas

    # The same recorder sees the lazy start of a plain ThreadPoolExecutor, so an empty list
    # below means no start happened, not that the recorder missed it.
    async def control():
        from concurrent.futures import ThreadPoolExecutor

        ex = ThreadPoolExecutor(2)
        monkeypatch.setattr(threading.Thread, "start", recording_start)
        try:
            await asyncio.get_running_loop().run_in_executor(ex, int, "1")
        finally:
            monkeypatch.setattr(threading.Thread, "start", real_start)
            ex.shutdown()

    asyncio.run(control())
    assert started, "the recorder did not see ThreadPoolExecutor start a thread"
    started.clear()
    metas = asyncio.run(main())
    assert len({x["id"] for x in metas}) == 2 * len(photos)  # every save stored an image
    assert started == []
