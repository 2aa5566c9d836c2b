#!/usr/bin/env python3
"""Model throughput and memory (figures, not a timed test).

Explains a case of 1,000,000 accesses over a 512 GiB shared mapping of a
file with 10,000 extents (some physically misaligned, some unwritten), and
prints accesses per second and peak memory.  Then checks that memory grows
with the 2 MiB ranges touched, not with the 4 KiB pages mapped: the same
number of accesses as 4 KiB faults packed into few PMD ranges vs spread out.

    python3 benchmarks/bench_model.py [--accesses N] [--extents N]
"""

import argparse
import gc
import os
import random
import resource
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pmemtrace.model import explain, parse_case

G, M = 1 << 30, 1 << 20


def build(n_access, n_ext, span=512 * G, seed=1, pte_only=False, pmd_ranges=None):
    rnd = random.Random(seed)
    ext_len = (span // n_ext) // (2 * M) * (2 * M)
    extents = []
    phys = 0
    for i in range(n_ext):
        # every 7th extent starts 1 MiB off a 2 MiB boundary, every 5th is unwritten
        skew = M if i % 7 == 3 else 0
        extents.append({"logical": i * ext_len, "physical": phys + skew, "length": ext_len, "unwritten": i % 5 == 0})
        phys += ext_len + 2 * M
    size = ext_len * n_ext
    accesses = []
    for _ in range(n_access):
        if pmd_ranges:
            off = rnd.randrange(pmd_ranges) * 2 * M + rnd.randrange(512) * 4096
        else:
            off = rnd.randrange(size // 4096) * 4096
        accesses.append({"mapping": "m0", "offset": off, "op": "write" if rnd.random() < 0.3 else "read"})
    return {
        "version": 1,
        "kernel": "6.12.95+deb12-amd64",
        "device": {"mode": "fsdax", "size": phys + 4 * G, "data_start": 4 * G},
        "file": {"size": size, "extents": extents, "fs": "xfs"},
        "mappings": [
            {"id": "m0", "start": 0x7F0000000000 - 0x7F0000000000 % (1 << 30), "length": size, "nohugepage": pte_only}
        ],
        "accesses": accesses,
    }


def timed(obj):
    t0 = time.perf_counter()
    case = parse_case(obj)
    t1 = time.perf_counter()
    pred = explain(case)
    t2 = time.perf_counter()
    return pred, pred.summary(), t1 - t0, t2 - t1


def traced(obj):
    case = parse_case(obj)
    gc.collect()
    tracemalloc.start()
    pred = explain(case, keep_results=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return pred, peak


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--accesses", type=int, default=1_000_000)
    ap.add_argument("--extents", type=int, default=10_000)
    a = ap.parse_args()
    n = a.accesses
    print(
        f"model benchmark: {n:,} accesses over a 512 GiB shared mapping, {a.extents:,} extents "
        "(1 in 7 physically misaligned, 1 in 5 unwritten), 30% writes, kernel 6.12"
    )
    # 1. uniform random offsets: the worst case (every access a cache miss in
    #    the model's page-table and xarray dicts, ~44% of accesses fault)
    obj = build(n, a.extents)
    pred, s, tp, te = timed(obj)
    print(
        f"  uniform random : parse {tp:5.2f} s, explain {te:5.2f} s -> {n / te:10,.0f} accesses/s; "
        f"faults {s['pmd']} PMD, {s['pte']} PTE, {s['huge_zero']} huge zero"
    )
    # 2. a strided sweep (4 KiB stride, wraps at 512 GiB): locality like a scan
    obj["accesses"] = [
        {"mapping": "m0", "offset": (i * 4096) % (512 * G), "op": "write" if i % 3 == 0 else "read"} for i in range(n)
    ]
    pred, s, tp, te = timed(obj)
    print(
        f"  4 KiB sweep    : parse {tp:5.2f} s, explain {te:5.2f} s -> {n / te:10,.0f} accesses/s; "
        f"faults {s['pmd']} PMD, {s['pte']} PTE, {s['huge_zero']} huge zero"
    )
    del pred, obj
    # 3. memory of the model state (explain(keep_results=False)): 4 KiB faults
    #    packed into 100 PMD ranges vs the same number of accesses spread
    #    over up to that many PMD ranges
    m = min(200_000, n)
    for label, ranges in (("packed", 100), ("spread", None)):
        obj = build(m, 1000, pte_only=True, pmd_ranges=ranges, seed=2)
        offs = [x["offset"] for x in obj["accesses"]]
        touched = len({o >> 21 for o in offs})
        pages = len({o >> 12 for o in offs})
        pred, peak = traced(obj)
        s = pred.summary()
        print(
            f"  memory {label}: {m:,} accesses, {s['pte'] + s['faults'].get('zero-pte', 0):,} 4 KiB faults on "
            f"{pages:,} pages in {touched:,} PMD ranges -> model peak {peak / M:6.1f} MiB "
            f"({peak / pages:5.0f} B/page, {peak / touched:6.0f} B/PMD range)"
        )
    print(f"  process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
