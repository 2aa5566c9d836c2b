#!/usr/bin/env python3
"""The user-space cost of watch's tracefs backend per event, without a
kernel: a real lab recording's ring-buffer pages (by default
fixtures/trace-dat/7.2-fsdax.v6.dat) written N times with rising
timestamps (bench_dat.synthesize), laid out as a tracefs tree
(tests/test_rawpipe.py tracefs_from_dat: each CPU's pages as its
trace_pipe_raw), then drained by a watch session as the default watch
drains it (dax_pte_fault not read, reasons off unless --reasons), once
through the Python reader (PMEMTRACE_PURE_PYTHON=1) and once through the
compiled path (fasttext.RawCounting).  Prints wall seconds and events/s of
each and their ratio, and checks the two gave the same views.  Run on an
idle machine: a loaded host only ever adds time.

    python benchmarks/bench_watch_decode.py                 # ~1,000,000 events
    python benchmarks/bench_watch_decode.py -n 300000 --reasons
"""

import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import pytest  # noqa: E402 (its MonkeyPatch lays out the tree, as in the tests)
from bench_dat import synthesis_arguments, synthesize  # noqa: E402
from test_rawpipe import tracefs_from_dat  # noqa: E402

from pmemtrace.live import fasttext, rawpipe  # noqa: E402
from pmemtrace.live.attribute import Attributor  # noqa: E402
from pmemtrace.live.record import Recorder, make_header  # noqa: E402
from pmemtrace.live.session import START_EVENTS, Session  # noqa: E402
from pmemtrace.live.tracefs import TracefsBackend  # noqa: E402
from pmemtrace.live.views import Aggregator  # noqa: E402

DEFAULT_DAT = os.path.join(ROOT, "fixtures", "trace-dat", "7.2-fsdax.v6.dat")


def drain_all(root, inst, events, pure, reasons, record=None):
    """(seconds, events read, views JSON) of one session draining the tree;
    *record*: a path, the session writes a page recording there (watch
    --record, as tracefs does it)."""
    if pure:
        os.environ[fasttext.PURE_ENV] = "1"
    else:
        os.environ.pop(fasttext.PURE_ENV, None)
    for ev in events:
        os.makedirs(os.path.join(root, "events", "fs_dax", ev), exist_ok=True)
    backend = TracefsBackend(root=root)
    t0 = time.perf_counter()
    backend.raw = rawpipe.RawPipes(root, inst, events, backend.stats)
    views = Aggregator(Attributor(release="7.2") if reasons else None)
    rec = Recorder(record, make_header("tracefs", kernel="7.2.13")) if record else None
    s = Session(backend, views, recorder=rec)
    s.started = True
    s._source_counts()
    if (backend.counting is None) != pure:
        sys.exit("the compiled path is not built (pip install -e . with a C compiler)")
    while True:
        s.feed(backend.drain(0))
        if not backend.behind:
            break
    s.finish()
    if rec is not None:
        rec.close(True)
    return time.perf_counter() - t0, backend.stats.events, json.dumps(views.to_json())


def main():
    ap = synthesis_arguments(__doc__, DEFAULT_DAT, "an uncompressed version-6 trace-cmd recording of fs_dax")
    ap.add_argument("--reasons", action="store_true", help="attribute fallbacks with the model, as watch does")
    ap.add_argument(
        "--record",
        action="store_true",
        help="watch --record: every event read (the dax_*_fault starts too) and the pages written to a file",
    )
    args = ap.parse_args()
    wanted = (lambda e: True) if args.record else (lambda e: e not in START_EVENTS)
    with tempfile.TemporaryDirectory() as d:
        mp = pytest.MonkeyPatch()
        try:
            root, inst, events, _dat = tracefs_from_dat(os.path.join(d, "one"), mp, args.dat)
            events = [e for e in events if wanted(e)]
            _s, per_copy, _v = drain_all(root, inst, events, True, False)
            copies = max(1, round(args.n / max(per_copy, 1)))
            big = os.path.join(d, "big.dat")
            synthesize(args.dat, big, copies)
            root, inst, events, _dat = tracefs_from_dat(os.path.join(d, "big"), mp, big)
            events = [e for e in events if wanted(e)]
        finally:
            mp.undo()
        print(
            f"{copies} copies of {args.dat}'s pages; reasons {'on' if args.reasons else 'off'}"
            + ("; --record (the pages written to a file)" if args.record else "")
        )
        out = {}
        for pure, label in ((True, "Python reader"), (False, "compiled")):
            rec = os.path.join(d, f"rec-{pure}") if args.record else None
            secs, n, views = drain_all(root, inst, events, pure, args.reasons, rec)
            if rec:
                os.unlink(rec)
            out[pure] = (secs, views)
            print(f"  {label:13}: {n:,} events in {secs:6.2f} s -> {n / secs:12,.0f} events/s", flush=True)
        print(f"  compiled / Python reader: {out[True][0] / out[False][0]:.1f}x the rate")
        if out[True][1] != out[False][1]:
            sys.exit("the two paths gave different views")
        print("  the same views: yes")


if __name__ == "__main__":
    main()
