#!/usr/bin/env python3
"""Replay parse rate: pmemtrace replay on a text trace of N fs_dax events
(default 1,000,000), and, when given a trace-cmd .dat file, trace-cmd report
on it against pmemtrace replay of the same trace's text.

Prints figures; asserts nothing.  Runs anywhere (no root):

    python benchmarks/bench_replay.py                 # synthetic 1,000,000-event trace
    python benchmarks/bench_replay.py --dat t.dat     # + trace-cmd report on a real recording

The synthetic trace is trace_pipe text in the kernel's fs_dax print format
(a mix of PMD faults, PMD fallbacks followed by PTE faults, as a real
misaligned workload gives), generated from pmemtrace.events.format_event.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pmemtrace.live.session import replay  # noqa: E402
from pmemtrace.events import format_event  # noqa: E402
from pmemtrace.live.parse import ParseStats, parse_trace_text  # noqa: E402

DEV = 259 << 20


def synth(path, n):
    base = 0x7F0000000000
    vm_end = base + (1 << 36)
    fl = 0x255
    with open(path, "w") as f:
        i = 0
        ts = 100.0
        while i < n:
            k = i // 4
            addr = base + k * (2 << 20)
            pmd = dict(dev=DEV, ino=12, vm_start=base, vm_end=vm_end, vm_flags=0xFB, address=addr,
                       pgoff=k * 512, max_pgoff=1 << 24, flags=fl, result=0)
            lines = [("dax_pmd_fault", pmd)]
            if k % 2:
                lines.append(("dax_pmd_fault_done", dict(pmd, result=0x100)))
                lines.append(("dax_pmd_fault", pmd))
                lines.append(("dax_pmd_fault_done", dict(pmd, result=0x100)))
            else:
                lines.append(("dax_pmd_fault_done", dict(pmd, result=0x800)))
                pte = dict(dev=DEV, ino=12, vm_flags=0xFB, address=addr, pgoff=k * 512, flags=fl, result=0)
                lines.append(("dax_pte_fault", pte))
                lines.append(("dax_pte_fault_done", dict(pte, result=0x100)))
            for name, fields in lines:
                if i >= n:
                    break
                ts += 0.00002
                f.write(f"          worker-4242    [001] ..... {ts:12.6f}: {name}: {format_event(name, fields)}\n")
                i += 1


def timed(fn):
    t = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=1_000_000, help="synthetic events (default 1,000,000)")
    ap.add_argument("--dat", help="a trace-cmd record file: also time trace-cmd report on it")
    ap.add_argument("--text", help="use this text trace instead of a synthetic one")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as d:
        path = args.text
        if not path:
            path = os.path.join(d, "trace.txt")
            _, t = timed(lambda: synth(path, args.n))
            print(f"synthetic trace: {args.n} events, {os.path.getsize(path) / 1e6:.0f} MB, written in {t:.1f} s")
        st = ParseStats()
        with open(path) as f:
            n, t_parse = timed(lambda: sum(1 for _ in parse_trace_text(f, st)))
        print(f"parse only       : {n} events in {t_parse:.2f} s = {n / t_parse:,.0f} events/s")
        (agg, src), t_all = timed(lambda: replay(path, kernel="6.12"))
        st2 = src.stats
        tot = agg.totals()
        print(f"pmemtrace replay : {st2.events} events in {t_all:.2f} s = {st2.events / t_all:,.0f} events/s "
              f"(views + model reasons for {tot['fallback']} fallbacks)")
        if args.dat:
            out = os.path.join(d, "report.txt")
            with open(out, "w") as f:
                _, t_tc = timed(lambda: subprocess.run(["trace-cmd", "report", "-i", args.dat], stdout=f,
                                                       stderr=subprocess.DEVNULL, check=True))
            (agg2, src3), t_rp = timed(lambda: replay(out))
            st3 = src3.stats
            print(f"trace-cmd report : {args.dat} in {t_tc:.2f} s; pmemtrace replay of its text: "
                  f"{st3.events} events in {t_rp:.2f} s (ratio replay/report {t_rp / t_tc:.2f})")


if __name__ == "__main__":
    main()
