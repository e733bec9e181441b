"""Every shell and Python example of README.md and docs/*.md, run against a
real `fastblocks serve`, so that the documentation cannot rot.

Conventions for writers of the docs:

* A fenced block whose language is ``sh``, ``bash`` or ``shell`` runs with
  ``bash -e -o pipefail``; ``python`` runs with /usr/bin/python3. Any other
  fence (``text``, ``json``, ``console``, none at all) is never run: use one
  of those for output, file layouts and pseudo-commands.
* ``<!-- docs-test: skip REASON -->`` on the line before a fence (blank lines
  between are allowed) keeps that block from running: for commands that
  install packages, rebuild the tree, run forever or need another machine.
  The reason is required, so that a skipped block says why.
* The blocks of one document run in order in one sandbox directory, so a
  block may use files an earlier block of the same document wrote (an id
  saved to a file, a downloaded image). Each block is its own process.
* The sandbox holds ``photo.jpg`` and ``photo.png`` (real images),
  ``data/`` (the store of a ``fastblocks serve`` started for this document,
  on 127.0.0.1 with a port the kernel picks), ``build`` (a link to the build
  directory: ``build/fastblocks``, ``PYTHONPATH=build/python`` work) and
  ``examples`` (a link to the source tree's examples/). ``fastblocks`` on
  PATH is the binary under test.
* ``127.0.0.1:8000`` and ``localhost:8000`` in a block are replaced by the
  test server's address, which is also in ``$FASTBLOCKS_TEST_URL``.
* A Python block that leaves a FastAPI ``app`` with the seed's
  ``POST /upload/`` route is driven with FastAPI's TestClient: upload
  photo.jpg, read it back as WebP, delete it, then 404.
* Python blocks need the extension (not built in sanitizer builds): there
  they are reported as skipped, the shell blocks still run.
"""

import os
import pathlib
import re
import shutil
import subprocess

import pytest

from conftest import BINARY, BUILD_DIR, Server

SOURCE = pathlib.Path(os.environ.get("FB_SOURCE_DIR",
                                     pathlib.Path(__file__).resolve().parents[2]))
DOCS = [SOURCE / "README.md"] + sorted((SOURCE / "docs").glob("*.md"))
IMAGES = SOURCE / "tests" / "data" / "images"
PY = "/usr/bin/python3"
BLOCK_TIMEOUT = int(os.environ.get("FB_DOCS_BLOCK_TIMEOUT", "120"))

SHELL_LANGS = {"sh", "bash", "shell"}
PYTHON_LANGS = {"python", "python3", "py"}
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)[^\n]*$")
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(\S+)\s*(.*?)\s*-->\s*$")


class Block:
    def __init__(self, doc, line, lang, code, directive, reason):
        self.doc = doc
        self.line = line          # 1-based line of the opening fence
        self.lang = lang
        self.code = code
        self.directive = directive
        self.reason = reason

    @property
    def where(self):
        return f"{self.doc.relative_to(SOURCE)}:{self.line}"


def extract(doc):
    """The fenced blocks of a Markdown file, with the docs-test marker before each."""
    lines = doc.read_text().split("\n")
    blocks = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.group(1), m.group(2), m.group(3).lower()
        j = i + 1
        body = []
        while j < len(lines) and not (lines[j].strip().startswith(fence[0] * len(fence))
                                      and lines[j].strip().strip(fence[0]) == ""):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
            j += 1
        # The nearest non-blank line above the fence may carry a marker.
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        mk = MARKER.match(lines[k]) if k >= 0 else None
        blocks.append(Block(doc, i + 1, lang, "\n".join(body) + "\n",
                            mk.group(1) if mk else None, mk.group(2) if mk else ""))
        i = j + 1
    return blocks


def runnable(doc):
    return [b for b in extract(doc) if b.lang in SHELL_LANGS | PYTHON_LANGS]


def have_extension():
    return (BUILD_DIR / "python" / "fastblocks").is_dir() and subprocess.run(
        [PY, "-c", "import fastblocks"], env=dict(os.environ, PYTHONPATH=str(BUILD_DIR / "python")),
        capture_output=True).returncode == 0


# The driver of a Python block: runs it as __main__ (a traceback names the
# document line), then drives a seed-style FastAPI app if the block built one.
DRIVER = r'''
import sys
src, path, where, photo = sys.argv[1:5]
code = compile(open(src).read(), where, "exec")
ns = {"__name__": "__main__", "__file__": path}
exec(code, ns)
app = ns.get("app")
try:
    from fastapi import FastAPI
except ImportError:
    FastAPI = None
if FastAPI is not None and isinstance(app, FastAPI) and any(
        getattr(r, "path", None) == "/upload/" for r in app.routes):
    from fastapi.testclient import TestClient
    with TestClient(app) as c:
        data = open(photo, "rb").read()
        r = c.post("/upload/", files={"file": ("photo.jpg", data, "image/jpeg")})
        assert r.status_code == 200, (r.status_code, r.text)
        meta = r.json()["metadata"]
        url = f"/images/{meta['block']}/{meta['offset']}/{meta['size']}"
        r = c.get(url)
        assert r.status_code == 200 and r.content[:4] == b"RIFF" and r.content[8:12] == b"WEBP", \
            (r.status_code, r.content[:16])
        r = c.delete(url)
        assert r.status_code == 200, (r.status_code, r.text)
        r = c.get(url)
        assert r.status_code == 404, (r.status_code, r.text)
    print("docs-test: FastAPI app served upload, read and delete")
'''


@pytest.fixture
def sandbox(tmp_path):
    box = tmp_path / "box"
    box.mkdir()
    shutil.copy(IMAGES / "colour-srgb.jpg", box / "photo.jpg")
    shutil.copy(IMAGES / "alpha.png", box / "photo.png")
    (box / "build").symlink_to(BUILD_DIR.resolve())
    (box / "examples").symlink_to(SOURCE / "examples")
    server = Server(box / "data", ["--quiet"], log_path=tmp_path / "server.log").start()
    yield box, server
    rc = server.stop()
    assert rc == 0, f"server exited with {rc}: {server.log()[-2000:]}"


def substitute(code, server):
    hostport = server.url[len("http://"):] if server.url.startswith("http://") else server.url
    return code.replace("127.0.0.1:8000", hostport).replace("localhost:8000", hostport)


def run_block(block, box, server, extension):
    """Runs one block; returns None, or a skip reason."""
    env = dict(os.environ)
    env["PATH"] = f"{BINARY.parent.resolve()}:{env.get('PATH', '/usr/bin:/bin')}"
    env["FASTBLOCKS_TEST_URL"] = server.url
    env["PYTHONPATH"] = str((BUILD_DIR / "python").resolve())
    env.pop("FASTBLOCKS_DATA", None)
    env.pop("FASTBLOCKS_KEY", None)
    code = substitute(block.code, server)
    if block.lang in SHELL_LANGS:
        argv = ["bash", "-e", "-o", "pipefail", "-c", code, block.where]
    else:
        if not extension:
            return "the Python extension is not built here"
        src = box / f".block-{block.line}.py"
        src.write_text(code)
        argv = [PY, "-c", DRIVER, str(src), str(box / "example.py"), block.where,
                str(box / "photo.jpg")]
    try:
        p = subprocess.run(argv, cwd=box, env=env, capture_output=True, text=True,
                           timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{block.where}: the {block.lang} block did not finish in {BLOCK_TIMEOUT} s "
                    f"(mark a block that runs forever with <!-- docs-test: skip REASON -->)\n"
                    f"{block.code}\nstdout: {e.stdout}\nstderr: {e.stderr}")
    if p.returncode != 0:
        pytest.fail(f"{block.where}: the {block.lang} block failed with exit status "
                    f"{p.returncode}\n--- block ---\n{code}--- stdout ---\n{p.stdout[-3000:]}"
                    f"--- stderr ---\n{p.stderr[-3000:]}--- server log ---\n"
                    f"{server.log()[-1500:]}")
    return None


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(SOURCE)) for d in DOCS])
def test_examples_run(doc, sandbox):
    box, server = sandbox
    blocks = runnable(doc)
    if not blocks:
        pytest.skip(f"{doc.name} has no shell or Python examples")
    extension = have_extension()
    ran, skipped = 0, []
    for b in blocks:
        if b.directive == "skip":
            assert b.reason, f"{b.where}: <!-- docs-test: skip --> needs a reason"
            skipped.append(f"{b.where} ({b.reason})")
            continue
        assert b.directive is None, f"{b.where}: unknown marker docs-test: {b.directive}"
        why = run_block(b, box, server, extension)
        if why:
            skipped.append(f"{b.where} ({why})")
        else:
            ran += 1
    print(f"{doc.name}: {ran} blocks ran, {len(skipped)} skipped: " + "; ".join(skipped))
    if ran == 0:
        pytest.skip("every block was skipped: " + "; ".join(skipped))


# --------------------------------------------------------------- the runner itself

def test_extract_finds_fences_and_markers(tmp_path):
    md = tmp_path / "x.md"
    md.write_text("intro\n\n```sh\necho one\n```\n\n<!-- docs-test: skip needs root -->\n\n"
                  "```bash\napt-get install x\n```\n\n```text\nnot code\n```\n"
                  "   ```python\n   print(1)\n   ```\n")
    blocks = extract(md)
    assert [(b.lang, b.line, b.directive) for b in blocks] == [
        ("sh", 3, None), ("bash", 9, "skip"), ("text", 13, None), ("python", 16, None)]
    assert blocks[0].code == "echo one\n"
    assert blocks[1].reason == "needs root"
    assert blocks[3].code == "print(1)\n"


def test_a_failing_example_fails(sandbox, tmp_path):
    """The runner must notice a block that fails, or the whole test could never fail."""
    box, server = sandbox
    bad = Block(SOURCE / "README.md", 1, "sh", "curl -sf http://127.0.0.1:8000/images/nope\n",
                None, "")
    with pytest.raises(pytest.fail.Exception) as e:
        run_block(bad, box, server, False)
    assert "exit status 22" in str(e.value)
    ok = Block(SOURCE / "README.md", 1, "sh",
               "curl -sf http://127.0.0.1:8000/healthz | grep -q ok\n", None, "")
    assert run_block(ok, box, server, False) is None


def test_every_doc_has_runnable_or_marked_blocks_only():
    """Every sh/python block either runs or says why not (no silent exclusions)."""
    for doc in DOCS:
        for b in runnable(doc):
            if b.directive is not None:
                assert b.directive == "skip" and b.reason, f"{b.where}: bad docs-test marker"
