"""cffi build script (API mode, out of line) for pmemtrace._replayfast, the
hot path of ``pmemtrace replay`` on fs_dax text traces (replayfast.c,
driven by pmemtrace/live/fasttext.py).

setup.py names it in cffi_modules.  The module is optional: replay runs the
pure-Python path when it is missing (or with PMEMTRACE_PURE_PYTHON=1).  The
cdef is read from replayfast.h between PMT_CDEF_BEGIN/END, so the C and the
cdef cannot drift apart.
"""

import os
import re

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _cdef():
    with open(os.path.join(HERE, "replayfast.h")) as f:
        text = f.read()
    body = text.split("/* PMT_CDEF_BEGIN */", 1)[1].split("/* PMT_CDEF_END */", 1)[0]
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    # cffi takes integer #defines of the form '#define NAME 123' as constants
    return "\n".join(line for line in body.splitlines() if line.strip())


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "pmemtrace._replayfast",
    '#include "replayfast.h"\n',
    sources=[os.path.relpath(os.path.join(HERE, "replayfast.c"), ROOT)],
    include_dirs=[HERE],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    os.chdir(ROOT)  # the source path above is relative to the root, as setup.py runs
    ffibuilder.compile(tmpdir=os.path.join(HERE, "_out"), verbose=True)
