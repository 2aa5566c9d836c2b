"""cffi build script (API mode, out of line) for pmemtrace._explain_core,
the compiled core of ``pmemtrace explain --json/--jsonl``.

setup.py names it in cffi_modules, beside build_engine.py.  The C lives in
explain_core.c/.h beside this script; the cdef is read from explain_core.h
(between PMT_CDEF_BEGIN/END, comments and preprocessor lines dropped:
cdefs.py), so the C and the cdef cannot drift apart.  The module is optional: without
it (no compiler, or PMEMTRACE_PURE_PYTHON=1) explain runs the Python model
alone (pmemtrace/model/core.py).
"""

import os
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cdefs import CFLAGS, header_cdef  # noqa: E402 (this directory, put on the path above)

ROOT = os.path.dirname(HERE)

ffibuilder = FFI()
ffibuilder.cdef(header_cdef(os.path.join(HERE, "explain_core.h")))
ffibuilder.set_source(
    "pmemtrace._explain_core",
    '#include "explain_core.h"\n',
    sources=[os.path.relpath(os.path.join(HERE, "explain_core.c"), ROOT)],
    include_dirs=[HERE],
    extra_compile_args=CFLAGS,
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=os.path.join(HERE, "_out"), verbose=True)
