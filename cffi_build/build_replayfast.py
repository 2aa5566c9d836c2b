"""cffi build script (API mode, out of line) for pmemtrace._replayfast, the
hot path of ``pmemtrace replay`` on fs_dax text traces (replayfast.c,
driven by pmemtrace/live/fasttext.py).

setup.py names it in cffi_modules.  The module is optional: replay runs the
pure-Python path when it is missing (or with PMEMTRACE_PURE_PYTHON=1).  The
cdef is read from replayfast.h between PMT_CDEF_BEGIN/END (cdefs.py), so the
C and the cdef cannot drift apart.
"""

import os
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cdefs import CFLAGS, header_cdef  # noqa: E402 (this directory, put on the path above)

ROOT = os.path.dirname(HERE)

ffibuilder = FFI()
# its #defines kept: cffi takes '#define NAME 123' as a constant (RF_DONE...)
ffibuilder.cdef(header_cdef(os.path.join(HERE, "replayfast.h"), keep_defines=True))
ffibuilder.set_source(
    "pmemtrace._replayfast",
    '#include "replayfast.h"\n',
    sources=[os.path.relpath(os.path.join(HERE, "replayfast.c"), ROOT)],
    include_dirs=[HERE],
    extra_compile_args=CFLAGS,
)

if __name__ == "__main__":
    os.chdir(ROOT)  # the source path above is relative to the root, as setup.py runs
    ffibuilder.compile(tmpdir=os.path.join(HERE, "_out"), verbose=True)
