"""What the three cffi build scripts (build_engine.py, build_explain.py,
build_replayfast.py) share: reading a cdef out of a C header, so the C, its
header and the cdef cannot drift apart, and the compile flags.

The scripts run through cffi's setuptools hook (exec'd with their own
__file__) or by hand; each puts this directory on sys.path to import it.
Build-only, like the rest of cffi_build/ (in the sdist, not installed).
"""

import re

# -O2 for the hot loops; -std=gnu11 for _GNU_SOURCE APIs (mremap, fallocate,
# MAP_FIXED_NOREPLACE in engine.c); -Wall -Wextra so warnings show in pip -v
# builds
CFLAGS = ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"]


def strip_c(text, keep_defines=False):
    """*text* as cffi's cdef takes it: comments and blank lines dropped, and
    preprocessor lines, but for ``#define``s with *keep_defines* (cffi
    takes ``#define NAME 123`` as an integer constant)."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    keep = []
    for line in text.splitlines():
        s = line.strip()
        if not s or (s.startswith("#") and not (keep_defines and s.startswith("#define"))):
            continue
        keep.append(line)
    return "\n".join(keep)


def header_cdef(path, keep_defines=False):
    """The declarations of the C header *path* between its
    ``/* PMT_CDEF_BEGIN */`` and ``/* PMT_CDEF_END */`` markers (strip_c)."""
    with open(path) as f:
        text = f.read()
    body = text.split("/* PMT_CDEF_BEGIN */", 1)[1].split("/* PMT_CDEF_END */", 1)[0]
    return strip_c(body, keep_defines)
