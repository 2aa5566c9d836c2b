"""cffi build script (API mode, out of line) for pmemtrace._explain_core,
the compiled core of ``pmemtrace explain --json/--jsonl``.

setup.py names it in cffi_modules, beside build_engine.py.  The C lives in
explain_core.c/.h beside this script; the cdef is read from explain_core.h
(between PMT_CDEF_BEGIN/END, comments and preprocessor lines dropped), so
the C and the cdef cannot drift apart.  The module is optional: without
it (no compiler, or PMEMTRACE_PURE_PYTHON=1) explain runs the Python model
alone (pmemtrace/model/core.py).
"""

import os
import re

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _cdef():
    with open(os.path.join(HERE, "explain_core.h")) as f:
        text = f.read()
    body = text.split("/* PMT_CDEF_BEGIN */", 1)[1].split("/* PMT_CDEF_END */", 1)[0]
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    body = re.sub(r"//[^\n]*", "", body)
    return "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("#"))


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "pmemtrace._explain_core",
    '#include "explain_core.h"\n',
    sources=[os.path.relpath(os.path.join(HERE, "explain_core.c"), ROOT)],
    include_dirs=[HERE],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=os.path.join(HERE, "_out"), verbose=True)
