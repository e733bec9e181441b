"""The fastblocks command line, driven as a user drives it.

Every test runs the real binary ($FB_BUILD_DIR/fastblocks) on a real store
in a temporary directory, with real images from the test corpus
($FB_CORPUS_DIR), and checks the exact exit code, stdout and stderr (zstd's
cli-tests are the model). Where a line carries a detail written by another
module (the image decoder's reason, say), that part is matched by a pattern
and the rest exactly.
"""
import json
import os
import pathlib
import pty
import re
import shutil
import stat
import subprocess

import pytest

BUILD = pathlib.Path(os.environ.get("FB_BUILD_DIR", "../../build"))
BIN = BUILD / "fastblocks"
CORPUS = pathlib.Path(os.environ.get("FB_CORPUS_DIR", "/nonexistent"))

ID_RE = r"[0-9a-f]{24}"
TRIPLE_RE = r"block_\d{8}\.fbk/\d+/\d+"
COMMANDS = ["put", "get", "rm", "ls", "stat", "verify", "compact", "keygen", "rekey"]


class Result:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr.decode("utf-8", "replace")

    @property
    def text(self):
        return self.out.decode()

    def __repr__(self):
        return f"rc={self.rc} out={self.out[:300]!r} err={self.err[:600]!r}"


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTBLOCKS_")}
    env.update(extra)
    return env


def run(*args, cwd=None, env=None, input=None, **envextra):
    proc = subprocess.run(
        [str(BIN), *map(str, args)],
        cwd=cwd,
        env=env if env is not None else clean_env(**envextra),
        input=input,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=120,
    )
    return Result(proc)


def web_images(n):
    files = sorted((CORPUS / "web").glob("*.jpg"))
    assert len(files) >= n, f"corpus too small: {CORPUS}"
    return files[:n]


def small_pngs(n):
    """Small PNGs from the corpus: fast to convert."""
    rows = [l.split("\t") for l in (CORPUS / "manifest.tsv").read_text().splitlines()[1:]]
    picked = [
        CORPUS / r[1]
        for r in rows
        if r[0] == "all" and r[2] == "PNG" and int(r[8]) < 60000 and int(r[3]) * int(r[4]) < 300000
    ]
    picked.sort()
    assert len(picked) >= n
    return picked[:n]


def bad_file():
    """A truncated JPEG: a real upload gone wrong."""
    for name in ("gdk__bug775218.jpg", "gdk__CVE-2017-2862.jpg"):
        if (CORPUS / "bad" / name).exists():
            return CORPUS / "bad" / name
    return sorted((CORPUS / "bad").glob("*.jpg"))[0]


@pytest.fixture
def store(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def keyfile(tmp_path):
    r = run("keygen")
    assert r.rc == 0, r
    p = tmp_path / "keys"
    p.write_bytes(r.out)
    return p


def put_ok(store, *files, extra=()):
    # One job: images land in input order, so offsets are predictable.
    r = run("put", "--data", store, "--durability", "none", "--jobs", "1", *extra, *files)
    assert r.rc == 0 and r.err == "", r
    lines = r.text.splitlines()
    assert len(lines) == len(files)
    out = []
    for line, f in zip(lines, files):
        m = re.fullmatch(rf"({ID_RE}) ({TRIPLE_RE}) (.*)", line)
        assert m, line
        assert m.group(3) == str(f)
        out.append((m.group(1), m.group(2)))
    return out


# ---------------------------------------------------------------------------
# The dispatcher


def test_version():
    r = run("--version")
    assert (r.rc, r.text, r.err) == (0, "fastblocks 0.1.0\n", "")


def test_help_lists_every_command():
    r = run("--help")
    assert r.rc == 0 and r.err == ""
    assert r.text.startswith("Usage: fastblocks COMMAND [OPTIONS] [ARGS]\n")
    for cmd in COMMANDS + ["serve"]:
        assert re.search(rf"^  {cmd} +\S", r.text, re.M), cmd
    assert "Exit codes: 0 ok, 1 failure, 2 usage error." in r.text


def test_no_command_is_usage_error():
    r = run()
    assert r.rc == 2 and r.out == b""
    assert r.err.startswith("Usage: fastblocks COMMAND")


@pytest.mark.parametrize(
    "args,err",
    [
        (["frob"], "fastblocks: unknown command 'frob' (see 'fastblocks --help')\n"),
        (["--frob"], "fastblocks: unknown option '--frob' (see 'fastblocks --help')\n"),
    ],
)
def test_unknown_command(args, err):
    r = run(*args)
    assert (r.rc, r.out, r.err) == (2, b"", err)


@pytest.mark.parametrize("cmd", COMMANDS)
def test_subcommand_help(cmd):
    for flag in ("--help", "-h"):
        r = run(cmd, flag)
        assert r.rc == 0 and r.err == "", r
        assert r.text.startswith(f"Usage: fastblocks {cmd}")
        assert "\nExamples:\n" in r.text
        assert re.search(rf"^  fastblocks {cmd}\b", r.text, re.M), "an example of the command"
        assert "Exit codes:" in r.text
        if cmd != "keygen":
            # The shared store options are documented with every store command.
            for opt in ("--data DIR", "--key-file FILE", "--durability MODE", "--cache-bytes"):
                assert opt in r.text, opt


def test_serve_help():
    r = run("serve", "--help")
    assert r.rc == 0 and r.err == ""
    assert "Usage: fastblocks serve" in r.text


# ---------------------------------------------------------------------------
# Usage errors: exit 2, one line on stderr, nothing on stdout, nothing created


@pytest.mark.parametrize(
    "args,err",
    [
        (["ls", "--frobnicate"], "fastblocks ls: unknown option '--frobnicate' (see 'fastblocks ls --help')"),
        (["ls", "extra"], "fastblocks ls: unexpected argument 'extra' (see 'fastblocks ls --help')"),
        (["stat", "x"], "fastblocks stat: unexpected argument 'x' (see 'fastblocks stat --help')"),
        (["ls", "--data"], "fastblocks ls: option --data needs a value (see 'fastblocks ls --help')"),
        (["ls", "--data="], "fastblocks ls: bad value '' for --data: must not be empty"),
        (["put", "--quality", "101", "a.jpg"], "fastblocks put: bad value '101' for --quality: must be 0..100"),
        (["put", "--quality=-1", "a.jpg"], "fastblocks put: bad value '-1' for --quality: must be 0..100"),
        (["put", "--effort", "7", "a.jpg"], "fastblocks put: bad value '7' for --effort: must be 0..6"),
        (["put", "--durability", "sometimes", "a.jpg"],
         "fastblocks put: bad value 'sometimes' for --durability: must be always, batch or none"),
        (["put", "--max-block-size", "12Q", "a.jpg"],
         "fastblocks put: bad value '12Q' for --max-block-size: must be 4K..512G bytes (suffixes K, M, G, T)"),
        (["put", "--max-block-size", "99999999999999999999", "a.jpg"],
         "fastblocks put: bad value '99999999999999999999' for --max-block-size: must be 4K..512G bytes (suffixes K, M, G, T)"),
        (["put", "--cache-bytes", "1X"], "fastblocks put: bad value '1X' for --cache-bytes: must be a byte count (suffixes K, M, G, T)"),
        (["put", "--compression-level", "0", "a.jpg"], "fastblocks put: bad value '0' for --compression-level: must be 1..19"),
        (["put", "--jobs", "0", "a.jpg"], "fastblocks put: bad value '0' for --jobs: must be 1..64"),
        (["put"], "fastblocks put: missing file (see 'fastblocks put --help'; '-' reads stdin)"),
        (["put", "-", "-"], "fastblocks put: '-' (stdin) can be given only once"),
        (["get"], "fastblocks get: missing image address (see 'fastblocks get --help')"),
        (["get", "a", "b"], "fastblocks get: one image address at a time (see 'fastblocks get --help')"),
        (["get", "nothex"], "fastblocks get: bad image address 'nothex': invalid id: want 24 lowercase hex digits"),
        (["get", "block_1.fbk/128/10"], "fastblocks get: bad image address 'block_1.fbk/128/10': invalid block name: want block_NNNNNNNN.fbk"),
        (["get", "block_00000001.fbk/-1/10"],
         "fastblocks get: bad image address 'block_00000001.fbk/-1/10': invalid address: offset and size must be decimal numbers"),
        (["rm"], "fastblocks rm: missing image address (see 'fastblocks rm --help')"),
        (["rm", "00000100000000800badcafe", "../etc/passwd/1/2"],
         "fastblocks rm: bad image address '../etc/passwd/1/2': invalid address: want ID or BLOCK/OFFSET/SIZE"),
        (["compact", "--threshold", "1.5"], "fastblocks compact: bad value '1.5' for --threshold: must be a ratio 0..1"),
        (["compact", "--threshold", "nan"], "fastblocks compact: bad value 'nan' for --threshold: must be a ratio 0..1"),
        (["keygen", "extra"], "fastblocks keygen: unexpected argument 'extra' (see 'fastblocks keygen --help')"),
        (["keygen", "--frob"], "fastblocks keygen: unknown option '--frob' (see 'fastblocks keygen --help')"),
        (["rekey"], "fastblocks rekey: no key: give --key-file FILE, FASTBLOCKS_KEY_FILE or FASTBLOCKS_KEY"),
        (["rekey", "gAAAAA"],
         "fastblocks rekey: unexpected argument 'gAAAAA' (keys are never given on the command line: use --key-file FILE)"),
    ],
)
def test_usage_errors(tmp_path, args, err):
    r = run(*args, cwd=tmp_path)
    assert (r.rc, r.out, r.err) == (2, b"", err + "\n")
    assert list(tmp_path.iterdir()) == [], "a usage error must not create anything"


@pytest.mark.parametrize(
    "var,value,err",
    [
        ("FASTBLOCKS_QUALITY", "abc", "fastblocks ls: bad value 'abc' in FASTBLOCKS_QUALITY: must be 0..100"),
        ("FASTBLOCKS_DURABILITY", "fast", "fastblocks ls: bad value 'fast' in FASTBLOCKS_DURABILITY: must be always, batch or none"),
        ("FASTBLOCKS_COMPRESSION", "maybe",
         "fastblocks ls: bad value 'maybe' in FASTBLOCKS_COMPRESSION: must be 1/0, true/false, yes/no or on/off"),
        ("FASTBLOCKS_KEY", "not-a-key", None),
    ],
)
def test_bad_environment(tmp_path, var, value, err):
    r = run("ls", cwd=tmp_path, **{var: value})
    assert r.rc == 2 and r.out == b"", r
    if err is None:
        assert re.fullmatch(r"fastblocks ls: bad key 1 in FASTBLOCKS_KEY: .+\n", r.err), r.err
        assert "not-a-key" not in r.err, "a key is never echoed"
    else:
        assert r.err == err + "\n"


@pytest.mark.parametrize(
    "opts",
    [
        ["--max-block-size", "4K"], ["--max-block-size=64KiB"], ["--max-block-size", "10MB"],
        ["--max-block-size", "512G"], ["--max-block-size", "1048576"], ["--cache-bytes", "0"],
        ["--cache-bytes", "2g"], ["--cache-entries", "18446744073709551615"],
        ["--durability", "batch", "--batch-interval-ms", "50"], ["--compression"],
        ["--compression", "--no-compression"], ["--compression-level=19"], ["--quality", "0"],
        ["--effort", "6"], ["--lossless", "--keep-metadata", "--max-dimension", "2048"],
        ["--json"], ["--", "--data-is-a-file-name"],
    ],
)
def test_valid_option_values(tmp_path, opts):
    # Accepted values get as far as opening the (missing) store.
    r = run("stat", *opts, cwd=tmp_path) if opts[0] != "--" else run("put", *opts, cwd=tmp_path)
    if opts[0] == "--":
        assert (r.rc, r.err) == (1, "fastblocks put: --data-is-a-file-name: No such file or directory\n")
    else:
        assert (r.rc, r.out, r.err) == (1, b"", "fastblocks stat: no store at ./data\n")


@pytest.mark.parametrize("value", ["513G", "1T", "4095", "0", "1.5M", "-1M", "1MiBs", "K", " 1M", "0x100"])
def test_bad_sizes(tmp_path, value):
    r = run("stat", "--max-block-size", value, cwd=tmp_path)
    assert (r.rc, r.out) == (2, b"")
    assert r.err == (f"fastblocks stat: bad value '{value}' for --max-block-size: "
                     "must be 4K..512G bytes (suffixes K, M, G, T)\n")


def test_command_line_overrides_environment(store):
    # FASTBLOCKS_QUALITY is invalid, but --quality on the command line wins.
    r = run("ls", "--data", store, "--quality", "50", FASTBLOCKS_QUALITY="abc")
    assert r.rc == 1 and r.err == f"fastblocks ls: no store at {store}\n", r


# ---------------------------------------------------------------------------
# A missing store is an error for everything but put, and is not created


@pytest.mark.parametrize(
    "args",
    [["ls"], ["stat"], ["verify"], ["get", "00000100000000800badcafe"],
     ["rm", "00000100000000800badcafe"], ["compact"]],
)
def test_missing_store(tmp_path, args):
    cmd = args[0]
    r = run(*args, cwd=tmp_path, env=clean_env())
    assert (r.rc, r.out, r.err) == (1, b"", f"fastblocks {cmd}: no store at ./data\n")
    assert not (tmp_path / "data").exists()
    # --data and FASTBLOCKS_DATA name the directory the same way.
    other = tmp_path / "elsewhere"
    r = run(*args, "--data", other, cwd=tmp_path)
    assert (r.rc, r.err) == (1, f"fastblocks {cmd}: no store at {other}\n")
    r = run(*args, cwd=tmp_path, FASTBLOCKS_DATA=str(other))
    assert (r.rc, r.err) == (1, f"fastblocks {cmd}: no store at {other}\n")
    assert list(tmp_path.iterdir()) == []


def test_rekey_missing_store(tmp_path, keyfile):
    r = run("rekey", "--key-file", keyfile, cwd=tmp_path)
    assert (r.rc, r.out, r.err) == (1, b"", "fastblocks rekey: no store at ./data\n")


# ---------------------------------------------------------------------------
# put, get, ls, rm


def test_put_get_roundtrip(tmp_path, store):
    files = web_images(2)
    ((id1, t1), (id2, t2)) = put_ok(store, *files)
    assert t1.startswith("block_00000001.fbk/128/"), "the first image's payload follows two headers"
    assert id1 != id2

    out = tmp_path / "one.webp"
    r = run("get", "--data", store, id1, "-o", out)
    assert (r.rc, r.out, r.err) == (0, b"", "")
    webp = out.read_bytes()
    assert webp[:4] == b"RIFF" and webp[8:12] == b"WEBP"
    assert int.from_bytes(webp[4:8], "little") + 8 == len(webp)

    # By seed triple, to stdout (a pipe): byte-identical.
    r = run("get", "--data", store, t1)
    assert (r.rc, r.err) == (0, "") and r.out == webp
    r = run("get", "--data", store, id1, "--output=-")
    assert r.rc == 0 and r.out == webp

    # It decodes, with the dimensions ls reports.
    from PIL import Image
    with Image.open(out) as im:
        im.load()
        size = im.size
    r = run("ls", "--data", store)
    assert r.rc == 0 and r.err == ""
    lines = r.text.splitlines()
    assert len(lines) == 2
    f = lines[0].split()
    assert f[0] == id1 and int(f[1]) == len(webp) and f[2] == f"{size[0]}x{size[1]}"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", f[3]) and f[4] == t1
    assert lines[1].split()[0] == id2, "oldest first"


def test_put_webp_is_served_unchanged(store, tmp_path):
    # A clean lossy WebP needs no conversion: what comes back is what went in.
    src = CORPUS / "all" / "webp" / "golang__blue-purple-pink.lossy.webp"
    if not src.exists():
        pytest.skip("corpus has no golang__blue-purple-pink.lossy.webp")
    ((i, t),) = put_ok(store, src)
    r = run("get", "--data", store, i)
    assert r.rc == 0
    assert r.out == src.read_bytes()


def test_put_parallel_keeps_input_order(store):
    files = small_pngs(8)
    r = run("put", "--data", store, "--jobs", "4", *files)
    assert r.rc == 0 and r.err == "", r
    lines = r.text.splitlines()
    assert [l.split(" ", 2)[2] for l in lines] == [str(f) for f in files]
    ids = [l.split()[0] for l in lines]
    assert len(set(ids)) == 8
    listed = [l.split()[0] for l in run("ls", "--data", store).text.splitlines()]
    assert sorted(listed) == sorted(ids)


def test_put_json(store):
    files = small_pngs(2)
    r = run("put", "--data", store, "--json", "--durability", "none", "-j1", *files)
    assert r.rc == 0 and r.err == "", r
    objs = [json.loads(l) for l in r.text.splitlines()]
    assert len(objs) == 2
    for o, f in zip(objs, files):
        for key in ("id", "block", "offset", "size", "width", "height", "bytes", "content_type"):
            assert key in o, key
        assert o["content_type"] == "image/webp" and o["file"] == str(f)
        assert re.fullmatch(ID_RE, o["id"])
    r = run("ls", "--data", store, "--json")
    assert r.rc == 0
    listed = [json.loads(l) for l in r.text.splitlines()]
    assert [o["id"] for o in listed] == [o["id"] for o in objs]
    assert listed[0] == {k: v for k, v in objs[0].items() if k != "file"}


def test_put_stdin(store):
    src = small_pngs(1)[0]
    r = run("put", "--data", store, "-", input=src.read_bytes())
    assert r.rc == 0 and r.err == "", r
    assert re.fullmatch(rf"{ID_RE} {TRIPLE_RE} -\n", r.text)


def test_put_bad_file_among_good(store):
    good = small_pngs(2)
    bad = bad_file()
    files = [good[0], bad, CORPUS / "nonexistent.jpg", good[1]]
    r = run("put", "--data", store, "--durability", "none", *files)
    assert r.rc == 1, r
    lines = r.text.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(" " + str(good[0])) and lines[1].endswith(" " + str(good[1]))
    err = r.err.splitlines()
    assert err[0] == f"fastblocks put: {CORPUS}/nonexistent.jpg: No such file or directory"
    assert re.fullmatch(
        rf"fastblocks put: {re.escape(str(bad))}: (unsupported image type|image cannot be decoded)(: .+)?",
        err[1]), err[1]
    assert err[2:] == ["fastblocks put: 2 of 4 files failed"]
    # The good ones were stored.
    r = run("ls", "--data", store)
    assert len(r.text.splitlines()) == 2


def test_put_only_bad_files(store):
    r = run("put", "--data", store, bad_file())
    assert r.rc == 1 and r.out == b""
    assert len(r.err.splitlines()) == 1, "one file: no summary line"


def test_put_empty_file(tmp_path, store):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    r = run("put", "--data", store, empty)
    assert (r.rc, r.out) == (1, b"")
    assert r.err == f"fastblocks put: {empty}: image cannot be decoded: the file is empty\n"
    r = run("put", "--data", store, "-", input=b"")
    assert r.err == "fastblocks put: -: image cannot be decoded: the file is empty\n"


def test_put_not_an_image(tmp_path, store):
    txt = tmp_path / "notes.txt"
    txt.write_bytes(b"hello, these are not pixels\n" * 10)
    r = run("put", "--data", store, txt)
    assert (r.rc, r.out) == (1, b"")
    assert re.fullmatch(rf"fastblocks put: {re.escape(str(txt))}: unsupported image type(: .+)?\n",
                        r.err), r.err


def test_put_directory(tmp_path, store):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    pngs = small_pngs(3)
    shutil.copy(pngs[0], src / "b.png")
    shutil.copy(pngs[1], src / "a.png")
    shutil.copy(pngs[2], src / "sub" / "c.png")
    (src / ".hidden.png").write_bytes(b"not an image")
    os.symlink(src, src / "sub" / "loop")  # a symlink to a directory is not followed
    r = run("put", "--data", store, "--durability", "none", src)
    assert r.rc == 0 and r.err == "", r
    names = [l.split(" ", 2)[2] for l in r.text.splitlines()]
    assert names == [f"{src}/a.png", f"{src}/b.png", f"{src}/sub/c.png"]


def test_put_progress_plain_lines(tmp_path, store):
    files = small_pngs(3)
    r = run("put", "--data", store, "--progress", "--jobs", "1", *files)
    assert r.rc == 0, r
    assert len(r.text.splitlines()) == 3
    assert "\r" not in r.err and "\033" not in r.err, "no terminal codes into a pipe"
    for line in r.err.splitlines():
        assert re.fullmatch(r"fastblocks put: \d+%  \d+/3 files  .+/s.*", line), line


def run_pty(args, stdout_tty=True, stderr_tty=False):
    """Runs the binary with stdout and/or stderr on a pseudo-terminal."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [str(BIN), *map(str, args)], env=clean_env(),
            stdout=slave if stdout_tty else subprocess.PIPE,
            stderr=slave if stderr_tty else subprocess.PIPE,
            stdin=subprocess.DEVNULL)
        os.close(slave)
        slave = -1
        tty_out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every slave side closed
                break
            if not chunk:
                break
            tty_out += chunk
        out = proc.stdout.read() if proc.stdout else b""
        err = proc.stderr.read() if proc.stderr else b""
        proc.wait(timeout=120)
        return proc.returncode, tty_out, out, err.decode()
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def test_get_refuses_terminal(store, tmp_path):
    ((i, t),) = put_ok(store, small_pngs(1)[0])
    rc, tty_out, _, err = run_pty(["get", "--data", store, i])
    assert rc == 2
    assert tty_out == b""
    assert err == ("fastblocks get: refusing to write binary image data to a terminal; "
                   "use -o FILE or redirect stdout\n")
    # With -o the terminal does not matter.
    rc, tty_out, _, err = run_pty(["get", "--data", store, i, "-o", tmp_path / "x.webp"])
    assert (rc, tty_out, err) == (0, b"", "")
    assert (tmp_path / "x.webp").read_bytes()[:4] == b"RIFF"


def test_put_progress_bar_on_terminal(tmp_path, store):
    files = small_pngs(3)
    rc, tty_out, out, _ = run_pty(["put", "--data", store, "--jobs", "1", *files],
                                  stdout_tty=False, stderr_tty=True)
    assert rc == 0
    assert len(out.splitlines()) == 3
    text = tty_out.decode()
    assert "fastblocks put [" in text and "/3 files" in text
    assert text.endswith("\r\033[K"), "the bar is erased at the end"


def test_rm_then_get(store):
    files = small_pngs(3)
    ((i1, t1), (i2, t2), (i3, t3)) = put_ok(store, *files)
    r = run("rm", "--data", store, i1, t2)
    assert (r.rc, r.text, r.err) == (0, f"deleted {i1}\ndeleted {t2}\n", "")
    for a in (i1, t1, i2, t2):
        r = run("get", "--data", store, a)
        assert r.rc == 1 and r.out == b""
        assert r.err.startswith(f"fastblocks get: image not found"), r.err
        assert r.err.count("\n") == 1
    r = run("get", "--data", store, i3)
    assert r.rc == 0 and r.out[:4] == b"RIFF"
    # Deleting again, or a wrong cookie: not found, the others still go.
    wrong_cookie = i3[:16] + ("0" * 8 if i3[16:] != "0" * 8 else "1" * 8)
    r = run("rm", "--data", store, i1, wrong_cookie, i3)
    assert r.rc == 1
    assert r.text == f"deleted {i3}\n"
    err = r.err.splitlines()
    assert len(err) == 2
    assert err[0].startswith(f"fastblocks rm: {i1}: image not found")
    assert err[1].startswith(f"fastblocks rm: {wrong_cookie}: image not found")
    r = run("ls", "--data", store)
    assert (r.rc, r.out, r.err) == (0, b"", "")


def test_rm_json(store):
    ((i, t),) = put_ok(store, small_pngs(1)[0])
    r = run("rm", "--data", store, "--json", i)
    assert r.rc == 0, r
    o = json.loads(r.text)
    assert o["deleted"] == i and o["block"] == "block_00000001.fbk"
    assert o["live_records"] == 0 and o["dead_records"] >= 1 and o["garbage_ratio"] > 0


# ---------------------------------------------------------------------------
# stat, verify, compact


def test_stat(store):
    files = small_pngs(3)
    put_ok(store, *files)
    r = run("stat", "--data", store, "--cache-bytes", "8M", "--cache-entries", "100")
    assert r.rc == 0 and r.err == "", r
    lines = r.text.splitlines()
    assert lines[0] == f"store:    {store}"
    assert re.fullmatch(r"blocks:   1 \(\d+ bytes, .+\)", lines[1])
    assert re.fullmatch(r"live:     3 images, \d+ bytes \(.+\)", lines[2])
    assert lines[3] == "dead:     0 records, 0 bytes (0 B)"
    assert lines[4] == "garbage:  0.0%"
    assert lines[5] == "cache:    8388608 bytes (8.4 MB), at most 100 images"
    assert lines[7].split() == ["BLOCK", "STATE", "LIVE_BYTES", "DEAD_BYTES", "LIVE", "DEAD",
                                "FILE_BYTES", "GARBAGE"]
    assert lines[8].split()[:2] == ["block_00000001.fbk", "active"]

    r = run("stat", "--data", store, "--json")
    o = json.loads(r.text)
    assert o["block_count"] == 1 and o["live_records"] == 3 and o["dead_records"] == 0
    assert o["cache"] == {"capacity_bytes": 64 << 20, "max_entries": 0}
    assert len(o["blocks"]) == 1 and o["blocks"][0]["live_records"] == 3
    assert o["blocks"][0]["sealed"] is False


def test_verify_clean(store):
    put_ok(store, *small_pngs(2))
    r = run("verify", "--data", store)
    assert r.rc == 0 and r.err == "", r
    assert re.fullmatch(r"checked 2 records \(\d+ bytes\): 0 problems\n", r.text)
    r = run("verify", "--data", store, "--json")
    o = json.loads(r.text)
    assert o["records_checked"] == 2 and o["problems"] == 0


def test_verify_progress(store):
    put_ok(store, *small_pngs(2))
    rc, tty_err, out, _ = run_pty(["verify", "--data", store], stdout_tty=False, stderr_tty=True)
    assert rc == 0 and re.fullmatch(rb"checked 2 records \(\d+ bytes\): 0 problems\n", out)
    assert re.fullmatch(r"(\r\033\[Kfastblocks verify \[[#.]+\] +\d+%  .+/s.*)+\r\033\[K",
                        tty_err.decode()), tty_err
    # Not a terminal: nothing, unless asked for; never terminal codes.
    r = run("verify", "--data", store)
    assert r.err == ""
    r = run("verify", "--data", store, "--progress")
    assert r.rc == 0 and "\033" not in r.err
    assert all(re.fullmatch(r"fastblocks verify: \d+%  .+", l) for l in r.err.splitlines())
    r = run_pty(["verify", "--data", store, "--no-progress"], stdout_tty=False, stderr_tty=True)
    assert r[0] == 0 and r[1] == b""


def test_verify_reports_corrupt_block(store):
    files = small_pngs(8)
    # 4K blocks: the damage is in a sealed block with an index file, which
    # opening the store does not rescan (a damaged active block would be
    # cut back to its last good record).
    ids = put_ok(store, *files, extra=["--max-block-size", "4K"])
    blocks = sorted((store / "blocks").glob("*.fbk"))
    assert len(blocks) >= 2
    assert ids[0][1].startswith("block_00000001.fbk/128/")
    size = int(ids[0][1].split("/")[2])
    first = store / "blocks" / "block_00000001.fbk"
    data = bytearray(first.read_bytes())
    data[128 + min(40, size - 1)] ^= 0x01  # a payload byte of the first record (header at 64)
    first.write_bytes(bytes(data))

    r = run("verify", "--data", store)
    assert r.rc == 1, r
    lines = r.text.splitlines()
    assert lines[0] == ("block_00000001.fbk offset 64: stored data is corrupt: "
                        "crc mismatch in block_00000001.fbk at offset 64")
    # Later lines may add what follows from it (the index no longer matching
    # the block); every one names a place in block 1, none another block.
    problems = lines[:-1]
    for line in problems:
        assert re.fullmatch(r"block_00000001\.(fbk|idx) offset \d+: stored data is corrupt: .+", line), line
    n = len(problems)
    assert re.fullmatch(rf"checked \d+ records \(\d+ bytes\): {n} problems?", lines[-1]), lines
    assert r.err == f"fastblocks verify: {n} problem{'s' if n > 1 else ''} found in {store}\n"

    r = run("verify", "--data", store, "--json")
    assert r.rc == 1
    objs = [json.loads(l) for l in r.text.splitlines()]
    assert objs[0] == {"block": "block_00000001.fbk", "offset": 64, "error": "ECORRUPT",
                       "message": "stored data is corrupt",
                       "detail": "crc mismatch in block_00000001.fbk at offset 64"}
    assert objs[-1]["problems"] == n and len(objs) == n + 1

    # Reading the damaged image fails cleanly; the others still read.
    r = run("get", "--data", store, ids[0][0])
    assert r.rc == 1 and r.out == b""
    assert r.err.startswith("fastblocks get: stored data is corrupt"), r.err
    r = run("get", "--data", store, ids[1][0])
    assert r.rc == 0 and r.out[:4] == b"RIFF"


def test_compact(store):
    files = small_pngs(8)
    ids = put_ok(store, *files, extra=["--max-block-size", "4K"])
    assert ids[0][1].startswith("block_00000001.fbk/") and ids[2][1].startswith("block_00000001.fbk/")
    assert not ids[-1][1].startswith("block_00000001.fbk/"), "block 1 is sealed"
    r = run("rm", "--data", store, ids[0][0], ids[2][0])
    assert r.rc == 0
    before = json.loads(run("stat", "--data", store, "--json").text)
    assert before["dead_bytes"] > 0
    r = run("compact", "--data", store, "--threshold", "0.1", "--max-block-size", "4K")
    assert r.rc == 0 and r.err == "", r
    m = re.fullmatch(r"compact: (\d+) blocks? rewritten, (\d+) records? moved, (\d+) bytes reclaimed \(.+\)\n",
                     r.text)
    assert m, r.text
    assert int(m.group(1)) >= 1 and int(m.group(3)) > 0
    after = json.loads(run("stat", "--data", store, "--json").text)
    assert after["file_bytes"] < before["file_bytes"]
    # Survivors keep their id and seed triple.
    for i, t in (ids[1], ids[3]):
        for a in (i, t):
            r = run("get", "--data", store, a)
            assert r.rc == 0 and r.out[:4] == b"RIFF", (a, r)
    r = run("get", "--data", store, ids[0][0])
    assert r.rc == 1
    r = run("verify", "--data", store)
    assert r.rc == 0, r
    r = run("compact", "--data", store, "--json")
    assert r.rc == 0
    assert json.loads(r.text)["bytes_reclaimed"] == 0


# ---------------------------------------------------------------------------
# Keys


def test_keygen():
    from cryptography.fernet import Fernet
    keys = set()
    for _ in range(3):
        r = run("keygen")
        assert r.rc == 0 and r.err == ""
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}=\n", r.text)
        f = Fernet(r.out.strip())  # raises if the key is not a valid Fernet key
        assert f.decrypt(f.encrypt(b"x")) == b"x"
        keys.add(r.text)
    assert len(keys) == 3


def test_keygen_output_file(tmp_path):
    p = tmp_path / "k"
    r = run("keygen", "-o", p)
    assert (r.rc, r.out, r.err) == (0, b"", "")
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    key = p.read_bytes()
    r = run("keygen", "--output", p)
    assert (r.rc, r.out) == (1, b"")
    assert r.err == f"fastblocks keygen: cannot create {p}: File exists\n"
    assert p.read_bytes() == key, "an existing key file is never overwritten"


def test_encrypted_store(tmp_path, store, keyfile):
    from cryptography.fernet import Fernet
    src = small_pngs(1)[0]
    ((i, t),) = put_ok(store, src, extra=["--key-file", keyfile])
    r = run("get", "--data", store, i, "--key-file", keyfile)
    assert r.rc == 0 and r.out[:4] == b"RIFF"
    plain = r.out
    # The same through the environment.
    key = keyfile.read_text().strip()
    assert run("get", "--data", store, i, FASTBLOCKS_KEY=key).out == plain
    assert run("get", "--data", store, i, FASTBLOCKS_KEY_FILE=str(keyfile)).out == plain
    # The stored bytes are a Fernet token of the WebP under that key.
    off, size = map(int, t.split("/")[1:])
    blob = (store / "blocks" / t.split("/")[0]).read_bytes()[off:off + size]
    import base64
    assert Fernet(key.encode()).decrypt(base64.urlsafe_b64encode(blob)) == plain

    r = run("get", "--data", store, i)
    assert r.rc == 1 and r.out == b""
    assert r.err.startswith("fastblocks get: record is encrypted and no key is configured"), r.err
    other = tmp_path / "other"
    other.write_bytes(run("keygen").out)
    r = run("get", "--data", store, i, "--key-file", other)
    assert r.rc == 1 and r.out == b""
    assert r.err.startswith("fastblocks get: integrity check failed"), r.err
    # Several keys: any of them decrypts.
    both = tmp_path / "both"
    both.write_text(other.read_text() + "\n# old key\n" + keyfile.read_text())
    r = run("get", "--data", store, i, "--key-file", both)
    assert r.rc == 0 and r.out == plain


@pytest.mark.parametrize(
    "content,err",
    [
        ("", "fastblocks ls: no key in {p}"),
        ("# only a comment\n\n", "fastblocks ls: no key in {p}"),
        ("short-and-wrong\n", None),
    ],
)
def test_bad_key_file(tmp_path, content, err):
    p = tmp_path / "keys"
    p.write_text(content)
    r = run("ls", "--key-file", p, cwd=tmp_path)
    assert r.rc == 2 and r.out == b""
    if err is None:
        assert re.fullmatch(rf"fastblocks ls: bad key 1 in {re.escape(str(p))}: .+\n", r.err), r.err
        assert "short-and-wrong" not in r.err
    else:
        assert r.err == err.format(p=p) + "\n"


def test_missing_key_file(tmp_path):
    r = run("ls", "--key-file", tmp_path / "nope", cwd=tmp_path)
    assert (r.rc, r.out) == (2, b"")
    assert r.err == f"fastblocks ls: cannot open key file {tmp_path}/nope: No such file or directory\n"


def test_rekey(tmp_path, store, keyfile):
    ids = put_ok(store, *small_pngs(2))
    plain = [run("get", "--data", store, i).out for i, _ in ids]
    r = run("rekey", "--data", store, "--key-file", keyfile)
    assert r.rc == 0 and r.err == "", r
    assert re.fullmatch(r"rekey: \d+ blocks? rewritten, 2 records moved, \d+ bytes reclaimed \(.+\)\n",
                        r.text), r.text
    for (i, t), p in zip(ids, plain):
        r = run("get", "--data", store, i)
        assert r.rc == 1 and "no key" in r.err
        assert run("get", "--data", store, i, "--key-file", keyfile).out == p
    # Now encrypted: the stored size has grown, but the triple given out at
    # upload (its SIZE is the birth stored length) still names the image.
    listed = [l.split() for l in run("ls", "--data", store).text.splitlines()]
    assert [l[0] for l in listed] == [i for i, _ in ids]
    for l, (i, t) in zip(listed, ids):
        assert l[4] == t
        assert run("get", "--data", store, l[4], "--key-file", keyfile).rc == 0
    assert run("verify", "--data", store).rc == 0


# ---------------------------------------------------------------------------
# One writer; readers alongside; Ctrl-C


def test_second_writer_is_refused_readers_are_not(store):
    put_ok(store, small_pngs(1)[0])
    # A put waiting for stdin holds the store open for writing.
    holder = subprocess.Popen([str(BIN), "put", "--data", str(store), "-"], env=clean_env(),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        # Wait until it holds the lock: its pid is written into the lock file.
        import time
        deadline = time.time() + 30
        lock = store / "fastblocks.lock"
        while time.time() < deadline:
            if lock.exists() and lock.read_text().strip() == str(holder.pid):
                break
            time.sleep(0.02)
        else:
            pytest.fail("the writer did not take the lock")
        r = run("put", "--data", store, small_pngs(2)[1])
        assert (r.rc, r.out) == (1, b"")
        assert re.fullmatch(r"fastblocks put: store is in use by another process: .*\b%d\b.*\n"
                            % holder.pid, r.err), r.err
        r = run("rm", "--data", store, "00000100000000800badcafe")
        assert r.rc == 1 and r.err.startswith("fastblocks rm: store is in use by another process")
        # Read-only commands share the store with its writer.
        r = run("ls", "--data", store)
        assert r.rc == 0 and len(r.text.splitlines()) == 1
        assert run("verify", "--data", store).rc == 0
        out, err = holder.communicate(small_pngs(2)[1].read_bytes(), timeout=60)
        assert holder.returncode == 0, err
        assert re.fullmatch(rf"{ID_RE} {TRIPLE_RE} -\n", out.decode())
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert len(run("ls", "--data", store).text.splitlines()) == 2


def test_put_interrupted(store):
    import signal
    photo = web_images(1)[0]
    n = 20
    proc = subprocess.Popen([str(BIN), "put", "--data", str(store), "--jobs", "1",
                             *[str(photo)] * n], env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()  # the first image is stored: interrupt
    assert first, proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=120)
    lines = (first + rest).decode().splitlines()
    assert proc.returncode == 1
    assert 1 <= len(lines) < n
    assert err.decode() == f"fastblocks put: interrupted: {n - len(lines)} of {n} files not stored\n"
    # What was reported stored is stored, and the store is clean.
    listed = run("ls", "--data", store).text.splitlines()
    assert sorted(l.split()[0] for l in listed) == sorted(l.split()[0] for l in lines)
    assert run("verify", "--data", store).rc == 0
