"""Touch rate of the workload engine (C loop) against a Python mmap loop on
the same mapping: pages per second for first-touch (faulting) and re-touch
(already mapped) passes, read and write.  Prints figures; asserts nothing.

    python benchmarks/bench_touch.py [--dir DIR] [--size 256M] [--json]

On a DAX mount (--dir /mnt/pmem) the first pass measures DAX faults; on an
ordinary filesystem it measures page-cache faults.
"""

import argparse
import json
import mmap
import os
import sys
import tempfile
import time

from pmemtrace.units import format_size, parse_int
from pmemtrace.workload import engine as E

PAGE = E.PAGE_SIZE
REPEAT = 3  # the "again" figure is the best of this many passes (shared machines are noisy)


def _python_loop(mm, npages, write):
    t0 = time.perf_counter()
    if write:
        for i in range(npages):
            mm[i * PAGE] = 1
    else:
        s = 0
        for i in range(npages):
            s += mm[i * PAGE]
    return time.perf_counter() - t0


def _cold(fd):
    """Drop the file's page cache so every first pass starts equally cold
    (no effect on DAX files, which have no page cache)."""
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def _engine_loop(m, write):
    t0 = time.perf_counter()
    n = m.touch(write=write)
    return time.perf_counter() - t0, n


def bench(path, size):
    npages = size // PAGE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    rows = []
    try:
        E.ftruncate(fd, size)
        E.fallocate(fd, 0, size)
        # warm-up, not measured: the very first pass over fresh extents pays
        # for the filesystem's extent lookups whichever loop comes first
        with E.mmap(fd, size) as w:
            w.touch()
        for write in (False, True):
            kind = "write" if write else "read"
            # engine: fresh mapping each time so the first pass faults
            _cold(fd)
            m = E.mmap(fd, size)
            try:
                t1, _n = _engine_loop(m, write)
                t2 = min(_engine_loop(m, write)[0] for _ in range(REPEAT))
            finally:
                m.unmap()
            rows.append(("engine", kind, npages / t1, npages / t2))
            _cold(fd)
            with mmap.mmap(fd, size, mmap.MAP_SHARED) as mm:
                t1 = _python_loop(mm, npages, write)
                t2 = min(_python_loop(mm, npages, write) for _ in range(REPEAT))
            rows.append(("python mmap", kind, npages / t1, npages / t2))
    finally:
        os.close(fd)
        os.unlink(path)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=None, help="where to put the scratch file (default: a temp dir)")
    ap.add_argument("--size", default="256M")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    size = parse_int(a.size)
    d = a.dir or tempfile.gettempdir()
    path = os.path.join(d, f".pmemtrace-bench-{os.getpid()}")
    rows = bench(path, size)
    if a.json:
        json.dump(
            [{"loop": r[0], "op": r[1], "first_pages_per_s": r[2], "again_pages_per_s": r[3]} for r in rows],
            sys.stdout,
            indent=1,
        )
        print()
        return 0
    print(f"touch rate, {format_size(size)} file in {d}, {size // PAGE} pages of {PAGE} bytes")
    print(f"{'loop':<12} {'op':<6} {'first touch (faults)':>22} {'again (mapped)':>18}")
    for loop, op, first, again in rows:
        print(f"{loop:<12} {op:<6} {first:>16,.0f} pg/s {again:>12,.0f} pg/s")
    eng = {r[1]: r[3] for r in rows if r[0] == "engine"}
    py = {r[1]: r[3] for r in rows if r[0] != "engine"}
    for op in ("read", "write"):
        print(f"engine / python on mapped pages ({op}): {eng[op] / py[op]:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
