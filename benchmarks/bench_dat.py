#!/usr/bin/env python3
"""Replay of a trace-cmd ``.dat``, end to end, against ``trace-cmd report``
on the same file: the whole ``pmemtrace replay TRACE.dat > OUT`` and the
whole ``trace-cmd report -i TRACE.dat > OUT`` as child processes (wall and
CPU seconds, events/s, peak RSS), and their ratio (issue 12's target: replay
at >= 10x trace-cmd report's rate).

The large .dat is synthesized from a real recording by repeating its
recorded ring-buffer pages: ``trace-cmd convert`` makes an uncompressed
version-6 copy of the recording, its per-CPU pages are written N times with
every page's timestamp shifted past the previous copy (the records inside
a page are deltas from it), and ``trace-cmd convert`` turns that back into
what Debian's trace-cmd writes by default (version 7, zstd).  Both files
are timed.  Prints figures; asserts nothing.

    python benchmarks/bench_dat.py                       # the 7.2 fixture, ~1,000,000 events
    python benchmarks/bench_dat.py --dat t.dat -n 2000000
    python benchmarks/bench_dat.py --write big.dat       # only write the synthesized v6 file
"""

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _whole_command import run_child

from pmemtrace.live.ftrace_binary import PageDecoder, PageHeader
from pmemtrace.live.parse import ParseStats
from pmemtrace.live.tracedat import open_dat, read_dat_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DAT = os.path.join(ROOT, "fixtures", "trace-dat", "7.2-fsdax.dat")


def convert(src, dst, version, compression):
    subprocess.run(
        ["trace-cmd", "convert", "-i", src, "--file-version", str(version), "--compression", compression, "-o", dst],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def synthesize(real_v6, out, copies):
    """Write *real_v6*'s pages *copies* times (see the module docstring)."""
    dat, mm = open_dat(real_v6)
    try:
        if dat.version != 6 or dat.compression != "none":
            sys.exit(f"{real_v6}: need an uncompressed version-6 file")
        ps = dat.page_size
        e = ">" if dat.big_endian else "<"
        q = struct.Struct(e + "Q")
        first, last = None, 0
        pages = {}
        # the span of a copy: from the first page's timestamp to the last
        # record's (a page's records run past its own timestamp), so every
        # CPU's timestamps keep rising from copy to copy, as the kernel's do
        decoder = PageDecoder(dat.header_page or PageHeader(), dat.formats, dat.big_endian)
        for c in dat.cpus:
            pages[c.cpu] = [bytes(mm[o : o + ps]) for o in range(c.offset, c.offset + c.size, ps)]
            for p in pages[c.cpu]:
                ts = q.unpack_from(p)[0]
                first = ts if first is None else min(first, ts)
                last = max(last, ts)
                recs: list = []
                decoder.decode(p, c.cpu, recs)
                last = max([last] + [r[0] for r in recs])
        span = (last - (first or 0)) + 10_000_000_000  # each copy starts 10 s after the last page of the one before
        head = mm[: dat.flyrecord_table]
    finally:
        mm.close()
    table_len = 16 * len(dat.cpus)
    pos = -(-(len(head) + table_len) // ps) * ps
    layout = []
    for c in dat.cpus:
        size = len(pages[c.cpu]) * ps * copies
        layout.append((pos, size))
        pos += -(-size // ps) * ps
    with open(out, "wb") as f:
        f.write(head)
        for off, size in layout:
            f.write(q.pack(off) + q.pack(size))
        for (off, _size), c in zip(layout, dat.cpus):
            f.seek(off)
            for k in range(copies):
                shift = k * span
                for p in pages[c.cpu]:
                    f.write(q.pack(q.unpack_from(p)[0] + shift) + p[8:])
        f.truncate(pos)


def count_events(path):
    st = ParseStats()
    _h, recs = read_dat_records(path, st)
    for _ in recs:
        pass
    return st.events


def synthesis_arguments(doc, dat=DEFAULT_DAT, dat_help="a real trace-cmd recording of fs_dax events"):
    """A parser with what a benchmark on synthesized pages takes: --dat, -n."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dat", default=dat, help=dat_help)
    ap.add_argument("-n", type=int, default=1_000_000, help="about this many events (default 1,000,000)")
    return ap


def main():
    ap = synthesis_arguments(__doc__)
    ap.add_argument("--write", metavar="PATH", help="only write the synthesized version-6 file")
    args = ap.parse_args()
    if not shutil.which("trace-cmd"):
        sys.exit("trace-cmd is not installed (Debian: apt-get install trace-cmd)")
    with tempfile.TemporaryDirectory() as d:
        v6 = os.path.join(d, "real.v6.dat")
        convert(args.dat, v6, 6, "none")
        per_copy = count_events(v6)
        copies = max(1, round(args.n / max(per_copy, 1)))
        big6 = args.write or os.path.join(d, "big.v6.dat")
        synthesize(v6, big6, copies)
        if args.write:
            print(f"{big6}: {per_copy * copies} events ({copies} copies of {args.dat}'s pages)")
            return
        big7 = os.path.join(d, "big.v7.dat")
        convert(big6, big7, 7, "zstd")
        n = per_copy * copies
        print(f"synthesized from {args.dat}: {copies} copies of its pages, {n:,} fs_dax events")
        for label, path in (("v7 zstd (Debian default)", big7), ("v6 uncompressed", big6)):
            out = os.path.join(d, "out")
            print(f"{label}: {os.path.getsize(path) / 1e6:.1f} MB")
            w_tc, c_tc, r_tc = run_child(["trace-cmd", "report", "-i", path], out)
            print(
                f"  trace-cmd report        : wall {w_tc:6.2f} s -> {n / w_tc:10,.0f} events/s "
                f"(CPU {c_tc:6.2f} s); peak RSS {r_tc:,.0f} MiB"
            )
            for extra in ([], ["--no-reasons"]):
                w, c, r = run_child([sys.executable, "-m", "pmemtrace", "replay", path, *extra], out)
                print(
                    f"  pmemtrace replay {' '.join(extra):<7}: wall {w:6.2f} s -> {n / w:10,.0f} events/s "
                    f"(CPU {c:6.2f} s); peak RSS {r:,.0f} MiB; {w_tc / w:.2f}x trace-cmd report's rate "
                    f"(CPU {c_tc / c:.2f}x)"
                )


if __name__ == "__main__":
    main()
