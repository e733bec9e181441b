"""Builds the fastblocks Python package with Debian's setuptools (no PyPI needed):

    /usr/bin/python3 -m pip install --no-build-isolation ./python

The extension compiles libfastblocks' own sources (../src) into itself, so nothing has to be
installed first; the system libraries come from pkg-config (apt install libvips-dev libjpeg-dev libwebp-dev
libzstd-dev libssl-dev pkg-config). Outside the source tree, an installed libfastblocks
(pkg-config fastblocks) is used instead.

FASTBLOCKS_SRC=/path/to/checkout names the source tree when this directory was copied away.
"""

import glob
import os
import re
import shlex
import subprocess

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
# The FastBlocks checkout whose src/ is compiled in: the parent of this directory, or
# FASTBLOCKS_SRC when the package directory was copied elsewhere to be built.
TOP = os.environ.get("FASTBLOCKS_SRC") or os.path.dirname(HERE)
DEPS = ["vips", "libjpeg", "libwebp", "libwebpmux", "libwebpdemux", "libzstd", "libcrypto"]


def pkg_config(*args):
    try:
        out = subprocess.run(["pkg-config", *args], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        raise SystemExit(f"fastblocks: pkg-config {' '.join(args)} failed: {detail.strip()}\n"
                         "Install: apt install pkg-config libvips-dev libjpeg-dev libwebp-dev libzstd-dev "
                         "libssl-dev") from None
    return shlex.split(out.stdout)


def version():
    header = os.path.join(TOP, "include", "fastblocks.h")
    if os.path.exists(header):
        with open(header, encoding="utf-8") as f:
            m = re.search(r'#define FB_VERSION_STRING "([^"]+)"', f.read())
        if m:
            return m.group(1)
    return "0.1.0"


lib_sources = sorted(glob.glob(os.path.join(TOP, "src", "*.c")) +
                     glob.glob(os.path.join(TOP, "src", "util", "*.c")))
if lib_sources:
    # In the source tree: libfastblocks is compiled into the extension.
    sources = [os.path.join(HERE, "_fastblocks.c")] + lib_sources
    include_dirs = [os.path.join(TOP, "include"), os.path.join(TOP, "src")]
    flags = pkg_config("--cflags", "--libs", *DEPS)
else:
    sources = [os.path.join(HERE, "_fastblocks.c")]
    include_dirs = []
    flags = pkg_config("--cflags", "--libs", "fastblocks", *DEPS)

ext = Extension(
    "fastblocks._fastblocks",
    sources=[os.path.relpath(s, HERE) if s.startswith(HERE) else s for s in sources],
    include_dirs=include_dirs + [f[2:] for f in flags if f.startswith("-I")],
    library_dirs=[f[2:] for f in flags if f.startswith("-L")],
    libraries=[f[2:] for f in flags if f.startswith("-l")] + ["pthread"],
    define_macros=[("_GNU_SOURCE", None)],
    extra_compile_args=["-std=c11", "-fvisibility=hidden", "-O2"] +
    [f for f in flags if f == "-pthread"],
)

setup(
    name="fastblocks",
    version=version(),
    description="FastBlocks image store for FastAPI: WebP images in block files, C inside",
    license="MIT",
    python_requires=">=3.9",
    packages=["fastblocks"],
    package_dir={"fastblocks": "fastblocks"},
    package_data={"fastblocks": ["py.typed", "*.pyi"]},
    ext_modules=[ext],
    extras_require={"fastapi": ["fastapi", "python-multipart"]},
    zip_safe=False,
)
