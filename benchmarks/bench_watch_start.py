#!/usr/bin/env python3
"""Where the bcc backend's start time goes, run INSIDE a lab guest (root):

  pmemtrace lab run --kernel 6.12 -- .venv/bin/python benchmarks/bench_watch_start.py

Prints seconds per phase: Python + bcc import, the BTF offsets, the probe
table (kallsyms, tracefs), clang compile + load of bpf/pmemtrace.bpf.c with
each mode's flags, bcc's floor (a one-tracepoint program), with --headers
what each kernel header adds.  Then the wall time of 'pmemtrace watch
--backend bcc' from exec to its "Hit Ctrl-C" line: without the compiled-
program cache (PMEMTRACE_BPF_CACHE=0), and in a fresh cache directory the
first start (compiles and saves) and the next (loads the saved program:
pmemtrace/live/bpfcache.py).  Asserts nothing.
"""

import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)


def timed(label, fn):
    t0 = time.perf_counter()
    out = fn()
    print(f"{label:52} {time.perf_counter() - t0:7.2f} s", flush=True)
    return out


def watch_start(extra=(), env=None):
    t0 = time.time()
    p = subprocess.Popen(
        [sys.executable, "-m", "pmemtrace", "watch", "--backend", "bcc", "--json", "-i", "3600", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=HERE,
        env=dict(os.environ, **(env or {})),
    )
    buf = b""
    while time.time() - t0 < 1200:
        r, _, _ = select.select([p.stderr], [], [], 1)
        if r:
            chunk = os.read(p.stderr.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            if b"Hit Ctrl-C" in buf:
                break
    took = time.time() - t0
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=300)
    return took, buf.decode(errors="replace")


def main():
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--headers", action="store_true", help="also time compiles with kernel headers (minutes)")
    args = ap.parse_args()
    timed("python -c 'import bcc' (fresh process)", lambda: subprocess.run([sys.executable, "-c", "import bcc"]))
    BPF = timed("import bcc (this process)", lambda: __import__("bcc").BPF)
    from pmemtrace.live import bpf_file
    from pmemtrace.live.bcc_backend import BccBackend
    from pmemtrace.live.btf import offsets

    timed("BTF member offsets (uncached)", lambda: offsets(cache=False))
    src = open(bpf_file("pmemtrace.bpf.c")).read()
    for label, kw in (("aggregate (default watch)", {"aggregate": True}), ("every event (--events)", {})):
        b = timed(f"probe table (kallsyms, tracefs, BTF): {label}", lambda kw=kw: BccBackend(**kw))
        flags = b.cflags()
        bpf = timed(f"compile + load bpf/pmemtrace.bpf.c: {label}", lambda flags=flags: BPF(text=src, cflags=flags))
        bpf.cleanup()
    # bcc writes the args struct from the format, which names vm_flags_t;
    # 7.x's headers no longer define it (bpf/pmemtrace.bpf.c does the same)
    minimal = (
        "typedef unsigned long vm_flags_t;\nTRACEPOINT_PROBE(fs_dax, dax_pmd_fault_done) { return args->result; }\n"
    )
    x = timed("compile: one tracepoint, no includes (bcc's floor)", lambda: BPF(text=minimal, cflags=["-w"]))
    x.cleanup()
    if args.headers:
        hdr = "-I" + os.path.dirname(bpf_file("pmemtrace.h"))
        for inc in ("linux/sched.h", "linux/mm_types.h", "linux/mm.h", "linux/fs.h"):
            text = f"#include <{inc}>\n" + minimal
            x = timed(f"compile: one tracepoint + <{inc}>", lambda t=text: BPF(text=t, cflags=["-w", hdr]))
            x.cleanup()
    # the whole command: without the compiled-program cache (bcc compiles),
    # then in a fresh cache directory twice (the first start compiles and
    # saves the entry, the second loads it: no clang, no bcc import)
    cache = tempfile.mkdtemp(prefix="pmemtrace-bench-cache-")
    runs = [("no cache", {"PMEMTRACE_BPF_CACHE": "0"})]
    runs += [("first (compiles, saves)", {"XDG_CACHE_HOME": cache}), ("cached", {"XDG_CACHE_HOME": cache})]
    try:
        for extra in ((), ("--events",)):
            for label, env in runs:
                took, err = watch_start(extra, env)
                what = f"watch --backend bcc {' '.join(extra)}: exec to attached, {label}"
                print(f"{what:52} {took:7.2f} s", flush=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    print(err[-1500:])


if __name__ == "__main__":
    main()
