#!/usr/bin/env python3
"""Bounded work in the model: figures for the whole ``pmemtrace explain
CASE --json`` command, output written to a file, as a user waits for it.

- N mappings (default 50,000) of 2 MiB, one read in every tenth: mapping
  setup must be O(n log n) (issue 11: 10,000 took 7.6 s, 50,000 > 20 s);
- a 1 TiB GUP: over a 1 TiB device-dax mapping (1 GiB pages: 1,024 PUD
  faults, each pinning 262,144 pages), and a 1 TiB length over a 2 MiB
  mapping (GUP stops at the VMA end).  (A 1 TiB GUP over an fsdax mapping
  takes 524,288 PMD faults, as the kernel does, each one a record of the
  output: that grows with the 2 MiB ranges, as it must.)
- 1 TiB munmap, madvise(MADV_DONTNEED) and pwrite over a few touched ranges.

Cost must grow with the 2 MiB ranges and extents touched, never with the
4 KiB pages of the length.  Prints one line per case: wall and CPU
seconds (the machine may be shared: CPU time is what the command costs),
peak RSS (MiB), output bytes.

    python3 benchmarks/bench_bounded.py [--mappings N]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

T, G, M = 1 << 40, 1 << 30, 1 << 20
BASE = 0x7F0000000000


def fsdax(size, accesses, mappings):
    return {
        "version": 1,
        "kernel": "6.12",
        "device": {"mode": "fsdax", "size": hex(2 * size), "align": "2M"},
        "file": {"size": hex(size), "extents": [{"logical": 0, "physical": 0, "length": hex(size)}]},
        "mappings": mappings,
        "accesses": accesses,
    }


def many_mappings(n):
    maps = [{"id": f"m{i}", "start": hex(BASE - (n * 4 * M) + i * 4 * M), "length": "2M"} for i in range(n)]
    acc = [{"op": "read", "mapping": f"m{i}", "offset": 0} for i in range(0, n, 10)]
    return fsdax(8 * M, acc, maps)


def cases(n_maps):
    big = [{"id": "m", "start": hex(0x100000000000), "length": "1T"}]
    yield f"{n_maps:,} mappings", many_mappings(n_maps)
    yield (
        "gup 1 TiB, devdax 1G (PUD faults)",
        {
            "version": 1,
            "kernel": "6.12",
            "device": {"mode": "devdax", "size": "1T", "align": "1G"},
            "mappings": [{"id": "m", "start": hex(0x100000000000), "length": "1T"}],
            "accesses": [{"op": "gup", "mapping": "m", "offset": 0, "length": "1T"}],
        },
    )
    yield (
        "gup 1 TiB length over a 2 MiB mapping",
        fsdax(
            2 * M,
            [{"op": "gup", "mapping": "m", "offset": 0, "length": "1T", "write": True}],
            [{"id": "m", "start": hex(0x100000000000), "length": "2M"}],
        ),
    )
    touch = [{"op": "write", "mapping": "m", "offset": hex(o)} for o in (0, 7 * G, 300 * G, T - 2 * M)]
    yield (
        "madvise dontneed + munmap 1 TiB",
        fsdax(
            T,
            touch
            + [{"op": "madvise", "mapping": "m", "offset": 0, "length": "1T", "advice": "dontneed"}]
            + touch
            + [{"op": "munmap", "mapping": "m"}],
            big,
        ),
    )
    yield "pwrite 1 TiB over a mapped file", fsdax(T, touch + [{"op": "pwrite", "offset": 0, "length": "1T"}], big)


def run(case, tmp):
    path = os.path.join(tmp, "case.json")
    out = os.path.join(tmp, "out.json")
    with open(path, "w") as f:
        json.dump(case, f)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(out, "w") as f:
        p = subprocess.run(
            [sys.executable, "-m", "pmemtrace", "explain", path, "--json"], stdout=f, stderr=subprocess.PIPE, text=True
        )
    dt = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    rss = after.ru_maxrss / 1024
    if p.returncode != 0:
        raise SystemExit(f"explain failed ({p.returncode}): {p.stderr.strip()}")
    return dt, cpu, rss, os.path.getsize(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mappings", type=int, default=50_000)
    args = ap.parse_args()
    print(f"{'case':42s} {'wall s':>7s} {'CPU s':>6s} {'max RSS MiB':>12s} {'output bytes':>13s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, case in cases(args.mappings):
            dt, cpu, rss, size = run(case, tmp)
            print(f"{name:42s} {dt:7.2f} {cpu:6.2f} {rss:12.0f} {size:13,d}", flush=True)
    print("(max RSS is the largest of the runs so far: RUSAGE_CHILDREN)")


if __name__ == "__main__":
    main()
