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

from pmemtrace.model import explain, parse_case  # noqa: E402

G, M = 1 << 30, 1 << 20


def build(n_access, n_ext, span=512 * G, seed=1, pte_only=False, pmd_ranges=None):
    rnd = random.Random(seed)
    ext_len = (span // n_ext) // (2 * M) * (2 * M)
    extents = []
    phys = 0
    for i in range(n_ext):
        # every 7th extent starts 1 MiB off a 2 MiB boundary, every 5th is unwritten
        skew = M if i % 7 == 3 else 0
        extents.append({"logical": i * ext_len, "physical": phys + skew, "length": ext_len,
                        "unwritten": i % 5 == 0})
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
        "version": 1, "kernel": "6.12.95+deb12-amd64",
        "device": {"mode": "fsdax", "size": phys + 4 * G, "data_start": 4 * G},
        "file": {"size": size, "extents": extents, "fs": "xfs"},
        "mappings": [{"id": "m0", "start": 0x7F0000000000 - 0x7F0000000000 % (1 << 30), "length": size,
                      "nohugepage": pte_only}],
        "accesses": accesses,
    }


def measure(obj):
    t0 = time.perf_counter()
    case = parse_case(obj)
    t1 = time.perf_counter()
    gc.collect()
    tracemalloc.start()
    t2 = time.perf_counter()
    pred = explain(case)
    t3 = time.perf_counter()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    s = pred.summary()
    return case, pred, s, t1 - t0, t3 - t2, peak


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--accesses", type=int, default=1_000_000)
    ap.add_argument("--extents", type=int, default=10_000)
    a = ap.parse_args()
    obj = build(a.accesses, a.extents)
    case, pred, s, tp, te, peak = measure(obj)
    print(f"case: {a.accesses} accesses, 512 GiB mapping, {a.extents} extents")
    print(f"  parse:   {tp:6.2f} s")
    print(f"  explain: {te:6.2f} s  -> {a.accesses / te:,.0f} accesses/s (target >= 500,000)")
    print(f"  faults: {s['pmd']} PMD, {s['pte']} PTE, {s['huge_zero']} huge zero; fallbacks {s['fallbacks']}")
    print(f"  peak traced memory during explain: {peak / M:.1f} MiB; "
          f"process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    # memory vs 4 KiB pages: 200k PTE faults in 100 PMD ranges vs in 200k ranges
    n = min(200_000, a.accesses)
    for label, ranges in (("packed", 100), ("spread", None)):
        obj = build(n, 1000, span=512 * G, pte_only=True, pmd_ranges=ranges, seed=2)
        _, pred, s, _, te, peak = measure(obj)
        touched = len({r.address >> 21 for r in pred.results})
        print(f"  memory, {n} accesses as 4 KiB faults {label:6s}: {s['pte']:7d} PTEs in {touched:7d} PMD ranges "
              f"-> peak {peak / M:7.1f} MiB ({peak / max(touched, 1):.0f} B per PMD range)")


if __name__ == "__main__":
    main()
