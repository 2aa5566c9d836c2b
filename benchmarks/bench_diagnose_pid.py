#!/usr/bin/env python3
"""diagnose --pid on a huge DAX mapping: the whole command (a fresh
``pmemtrace diagnose`` process, output written to a file), on a fixture proc
tree of a process that maps a 4 TiB file on a DAX filesystem (and, with
--whole, one whose smaps range covers the user address space).

Prints wall time and peak RSS of the command; asserts nothing.  Target
(issue 11): <= 5 s and <= 200 MB for 4 TiB.  Runs anywhere (no root):

    python benchmarks/bench_diagnose_pid.py
    python benchmarks/bench_diagnose_pid.py --tib 64 --json

The tree is fixtures/handmade/e820-whole-xfs (an xfs -o dax mount on pmem)
with /proc/4242/smaps replaced: a 2 MiB-aligned shared mapping, one 1 MiB
off (every chunk a colour mismatch), and a small one.
"""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TREE = os.path.join(os.path.dirname(HERE), "fixtures", "handmade", "e820-whole-xfs")
TiB = 1 << 40


def smaps(tib):
    length = tib * TiB
    maps = [(0x100000000000, length, 0), (0x300000100000, length, 0), (0x7F0000000000, 8 << 20, 0)]
    out = []
    for start, ln, off in maps:
        out.append(
            f"{start:x}-{start + ln:x} rw-s {off:08x} 103:00 12                         /mnt/pmem/data\n"
            f"Size:           {ln >> 10} kB\nKernelPageSize:        4 kB\nVmFlags: rd wr sh mr mw me ms\n"
        )
    return "".join(out)


def run(cmd, out_path):
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    with open(out_path, "w") as out:
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, text=True).returncode
    secs = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, the largest child so far
    return rc, secs, rss, before


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tib", type=int, default=4, help="size of each big mapping in TiB (default 4)")
    ap.add_argument("--json", action="store_true", help="measure --json output instead of the table")
    args = ap.parse_args()
    pmemtrace = os.path.join(os.path.dirname(sys.executable), "pmemtrace")
    with tempfile.TemporaryDirectory() as tmp:
        proc = os.path.join(tmp, "proc")
        shutil.copytree(os.path.join(TREE, "proc"), proc, symlinks=True)
        with open(os.path.join(proc, "4242", "smaps"), "w") as f:
            f.write(smaps(args.tib))
        cmd = [
            pmemtrace,
            "diagnose",
            "--pid",
            "4242",
            "--no-host",
            "--sysfs-root",
            os.path.join(TREE, "sys"),
            "--procfs-root",
            proc,
        ] + (["--json"] if args.json else ["--no-colour"])
        out_path = os.path.join(tmp, "out")
        rc, secs, rss, _ = run(cmd, out_path)
        size = os.path.getsize(out_path)
        print(
            f"diagnose --pid, 2 mappings of {args.tib} TiB + one of 8 MiB "
            f"({'--json' if args.json else 'table'}): exit {rc}, {secs:.2f} s, peak RSS {rss / 1024:.0f} MB, "
            f"output {size} bytes"
        )
        print("target: <= 5 s and <= 200 MB for 4 TiB")


if __name__ == "__main__":
    main()
