"""Memory per mapping row of the watch/replay views, and the --max-rows bound.

Feeds N distinct mappings (one PMD fault and one fallback + PTE fault each,
all in one process's file, as a many-mapping workload makes) through the
views, with and without the fallback attributor, and prints the memory
retained per row (tracemalloc), then the same with --max-rows.

    python benchmarks/bench_rows.py            # N = 10,000
    python benchmarks/bench_rows.py -n 100000
"""

import argparse
import gc
import os
import sys
import tracemalloc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pmemtrace.events import VM_FAULT, Event
from pmemtrace.live.attribute import Attributor
from pmemtrace.live.views import Aggregator


def events(n):
    for m in range(n):
        base = 0x7F0000000000 + m * (8 << 20)
        pmd = dict(
            dev=259 << 20,
            ino=12,
            vm_start=base,
            vm_end=base + (4 << 20),
            vm_flags=0xFB,
            address=base,
            pgoff=m * 1024,
            max_pgoff=1 << 30,
            flags=0x255,
        )
        yield Event("dax_pmd_fault_done", dict(pmd, result=VM_FAULT["NOPAGE"]), pid=4242, comm="w", ts=m)
        yield Event(
            "dax_pmd_fault_done",
            dict(pmd, address=base + (2 << 20), result=VM_FAULT["FALLBACK"]),
            pid=4242,
            comm="w",
            ts=m,
        )
        yield Event(
            "dax_pte_fault_done",
            dict(
                dev=259 << 20,
                ino=12,
                vm_flags=0xFB,
                address=base + (2 << 20),
                pgoff=m * 1024 + 512,
                flags=0x255,
                result=VM_FAULT["NOPAGE"],
            ),
            pid=4242,
            comm="w",
            ts=m,
        )


def measure(n, attributor, max_rows=None):
    gc.collect()
    tracemalloc.start()
    agg = Aggregator(Attributor(release="6.12.0") if attributor else None, max_rows=max_rows)
    for ev in events(n):
        agg.add(ev)
    gc.collect()
    cur, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return agg, cur


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=10_000, help="distinct mappings (default 10,000)")
    args = ap.parse_args()
    n = args.n
    for attributor in (False, True):
        agg, cur = measure(n, attributor)
        label = "views + attributor" if attributor else "views only        "
        print(f"{label}: {len(agg.rows)} rows, {cur / 1e6:.1f} MB retained = {cur / len(agg.rows):,.0f} B per row")
    bound = max(1, n // 10)
    agg, cur = measure(n, True, max_rows=bound)
    print(
        f"--max-rows {bound}: {len(agg.rows)} rows + other ({agg.folded_events} events folded), "
        f"{cur / 1e6:.1f} MB retained (attributor included)"
    )


if __name__ == "__main__":
    main()
