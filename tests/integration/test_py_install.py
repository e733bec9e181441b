"""`pip install --no-build-isolation` of python/ with Debian's setuptools: the package builds
(libfastblocks compiled in), installs its type information, and works from the install."""

import glob
import os
import shutil
import subprocess
import sys

import pytest

SOURCE = os.environ.get("FB_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
CORPUS = os.environ.get("FB_CORPUS_DIR", "")


def test_pip_install_target(tmp_path):
    pytest.importorskip("pip")
    # Build from a copy, so the test leaves nothing in the source tree.
    pkg = tmp_path / "pkg"
    shutil.copytree(os.path.join(SOURCE, "python"), pkg,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    env = dict(os.environ, FASTBLOCKS_SRC=SOURCE, PIP_NO_INDEX="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--no-build-isolation",
                          "--no-deps", "--target", str(target), str(pkg)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    installed = target / "fastblocks"
    for name in ("__init__.py", "manager.py", "client.py", "fastapi.py", "py.typed",
                 "_fastblocks.pyi"):
        assert (installed / name).is_file(), name
    assert glob.glob(str(installed / "_fastblocks*.so"))

    jpeg = sorted(glob.glob(os.path.join(CORPUS, "web", "*.jpg")))[0]
    code = f"""
import fastblocks, sys
from fastblocks import BlockManager
assert fastblocks.__file__.startswith({str(target)!r}), fastblocks.__file__
key = BlockManager.generate_encryption_key()
with BlockManager({str(tmp_path / 'store')!r}, compression=True, encryption_key=key) as m:
    meta = m.save_image_sync(open({jpeg!r}, 'rb').read())
    data = m.read_image_sync(meta['block'], meta['offset'], meta['size'])
    assert data[:4] == b'RIFF' and len(data) == meta['bytes']
print('ok', fastblocks.__version__)
"""
    env["PYTHONPATH"] = str(target)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=str(tmp_path), timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok ")
