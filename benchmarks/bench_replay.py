#!/usr/bin/env python3
"""Replay rate, end to end: the whole ``pmemtrace replay TRACE > OUT`` as a
child process on a text trace of N fs_dax events (default 1,000,000), with
reasons, with ``--no-reasons`` and with ``--json``, by the compiled path
(pmemtrace._replayfast) and by the pure-Python one (PMEMTRACE_PURE_PYTHON=1),
and whether the two outputs are identical: events/s (by wall and by the
child's CPU time) and peak RSS.  Second figure: the phases in process
(the pure-Python parser alone; the whole replay()).  When given a trace-cmd .dat
file, also trace-cmd report on it against pmemtrace replay of its text.

Prints figures; asserts nothing.  Runs anywhere (no root):

    python benchmarks/bench_replay.py                 # synthetic 1,000,000-event trace
    python benchmarks/bench_replay.py --dat t.dat     # + trace-cmd report on a real recording
    python benchmarks/bench_replay.py --write-trace t.txt   # only write the trace

The synthetic trace (issue 12's realistic mix) is trace_pipe text in the
kernel's fs_dax print format, generated from pmemtrace.events.format_event:
three 64 GiB shared mappings of three files touched in turn, 2 MiB range
after 2 MiB range; three ranges in four take a PMD fault, the fourth falls
back and takes 64 PTE faults (one fallback in 136 events).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pmemtrace.events import format_event
from pmemtrace.live import fasttext
from pmemtrace.live.parse import ParseStats, parse_trace_text
from pmemtrace.live.session import replay

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _whole_command import run_child

DEV = 259 << 20


def synth(path, n):
    maps = [(0x7F0000000000 + j * (1 << 37), 12 + j) for j in range(3)]
    span = 1 << 36  # 64 GiB each
    fl_r, fl_w = 0x254, 0x255
    i = 0
    ts = 100.0
    k = 0
    with open(path, "w") as f:
        while i < n:
            base, ino = maps[k % 3]
            blk = k // 3
            k += 1
            addr = base + blk * (2 << 20)
            fl = fl_w if blk % 3 == 0 else fl_r
            pmd = dict(
                dev=DEV,
                ino=ino,
                vm_start=base,
                vm_end=base + span,
                vm_flags=0xFB,
                address=addr,
                pgoff=blk * 512,
                max_pgoff=(span >> 12) - 1,
                flags=fl,
                result=0,
            )
            lines = [("dax_pmd_fault", pmd)]
            if blk % 4 != 3:
                lines.append(("dax_pmd_fault_done", dict(pmd, result=0x100)))
            else:
                lines.append(("dax_pmd_fault_done", dict(pmd, result=0x800)))
                for p in range(64):
                    pte = dict(
                        dev=DEV,
                        ino=ino,
                        vm_flags=0xFB,
                        address=addr + p * 4096,
                        pgoff=blk * 512 + p,
                        flags=fl,
                        result=0,
                    )
                    lines.append(("dax_pte_fault", pte))
                    lines.append(("dax_pte_fault_done", dict(pte, result=0x100)))
            for name, fields in lines:
                if i >= n:
                    break
                ts += 0.000002
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
    ap.add_argument("--write-trace", metavar="PATH", help="only write the synthetic trace to PATH")
    args = ap.parse_args()

    if args.write_trace:
        synth(args.write_trace, args.n)
        return
    with tempfile.TemporaryDirectory() as d:
        path = args.text
        if not path:
            path = os.path.join(d, "trace.txt")
            _, t = timed(lambda: synth(path, args.n))
            print(f"synthetic trace: {args.n} events, {os.path.getsize(path) / 1e6:.0f} MB, written in {t:.1f} s")
        exe = [sys.executable, "-m", "pmemtrace", "replay", path]
        pure = ["env", f"{fasttext.PURE_ENV}=1"]  # env execs python: the same process is timed
        compiled = "compiled path" if fasttext.available() else "compiled path NOT BUILT: pure"
        outs = {}
        for label, pre in ((compiled, []), ("pure Python", pure)):
            for extra in ([], ["--no-reasons"], ["--json"]):
                out = os.path.join(d, f"out{len(outs)}")
                wall, cpu, rss = run_child(pre + exe + extra, out)
                with open(out, "rb") as f:
                    outs[(label, tuple(extra))] = f.read()
                print(
                    f"replay {' '.join(extra):<13} ({label}): wall {wall:6.2f} s -> {args.n / wall:10,.0f} "
                    f"events/s (CPU {cpu:6.2f} s -> {args.n / cpu:10,.0f}/s); peak RSS {rss:,.0f} MiB"
                )
        for extra in ([], ["--no-reasons"], ["--json"]):
            same = outs[(compiled, tuple(extra))] == outs[("pure Python", tuple(extra))]
            print(f"output of replay {' '.join(extra):<13}: {'identical' if same else 'DIFFERS'} in both paths")
        st = ParseStats()
        with open(path) as f:
            n, t_parse = timed(lambda: sum(1 for _ in parse_trace_text(f, st)))
        print(f"phase, parse only       : {n} events in {t_parse:.2f} s = {n / t_parse:,.0f} events/s")
        (agg, src), t_all = timed(lambda: replay(path, kernel="6.12"))  # the compiled path when built
        st2 = src.stats
        tot = agg.totals()
        print(
            f"phase, replay() in proc : {st2.events} events in {t_all:.2f} s = {st2.events / t_all:,.0f} events/s "
            f"(views + model reasons for {tot['fallback']} fallbacks: {tot['fallback_reasons']})"
        )
        if args.dat:
            out = os.path.join(d, "report.txt")
            with open(out, "w") as f:
                _, t_tc = timed(
                    lambda: subprocess.run(
                        ["trace-cmd", "report", "-i", args.dat], stdout=f, stderr=subprocess.DEVNULL, check=True
                    )
                )
            (_agg2, src3), t_rp = timed(lambda: replay(out))
            st3 = src3.stats
            print(
                f"trace-cmd report : {args.dat} in {t_tc:.2f} s; pmemtrace replay of its text: "
                f"{st3.events} events in {t_rp:.2f} s (ratio replay/report {t_rp / t_tc:.2f})"
            )


if __name__ == "__main__":
    main()
