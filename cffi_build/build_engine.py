"""cffi build script (API mode, out of line) for pmemtrace._engine.

setup.py names it: cffi_modules=["cffi_build/build_engine.py:ffibuilder"].
The C lives in real files beside this script (engine.c, engine.h); the cdef
is read from engine.h (between PMT_CDEF_BEGIN/END) and from bpf/pmemtrace.h
(the event record shared with the BPF programs), with preprocessor lines
dropped (cdefs.py), so the C, the cdef and the BPF side cannot drift apart.

This directory is build-only: it is not installed (packages.find includes
pmemtrace* only) but must ship in the sdist.
"""

import os
import re
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cdefs import CFLAGS, header_cdef, strip_c  # noqa: E402 (this directory, put on the path above)

ROOT = os.path.dirname(HERE)
BPF_DIR = os.path.join(ROOT, "bpf")


def _version():
    with open(os.path.join(ROOT, "pmemtrace", "__init__.py")) as f:
        m = re.search(r'^__version__\s*=\s*"([^"]+)"', f.read(), re.M)
    if not m:
        raise RuntimeError("pmemtrace/__init__.py has no __version__")
    return m.group(1)


def _engine_cdef():
    return header_cdef(os.path.join(HERE, "engine.h"))


def _event_cdef():
    path = os.path.join(BPF_DIR, "pmemtrace.h")
    if not os.path.exists(path):
        return ""
    with open(path) as f:
        return strip_c(f.read())


VERSION = _version()
ffibuilder = FFI()
ffibuilder.cdef(_event_cdef())
ffibuilder.cdef(_engine_cdef())

# The version is baked in and checked at import
# (pmemtrace/workload/engine.py) so a stale .so is caught with a remedy.

ffibuilder.set_source(
    "pmemtrace._engine",
    # bpf/pmemtrace.h typedefs __u8/__u32/__u64 unless told the kernel's
    # are present; linux/types.h (pulled in by engine.c's headers) has them.
    "#include <linux/types.h>\n"
    "#define __PMT_HAVE_KERNEL_TYPES 1\n"
    + ('#include "pmemtrace.h"\n' if _event_cdef() else "")
    + '#include "engine.h"\n',
    sources=[os.path.relpath(os.path.join(HERE, "engine.c"), ROOT)],
    include_dirs=[HERE, BPF_DIR],
    define_macros=[("PMEMTRACE_VERSION", f'"{VERSION}"')],
    extra_compile_args=CFLAGS,
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=os.path.join(HERE, "_out"), verbose=True)
