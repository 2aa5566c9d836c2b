"""pmemtrace replay: the watch views, offline, from a recording or a text trace."""

import argparse
import sys

from ..events import Event
from ..live.attrcache import CachedAttributor
from ..live.attribute import Attributor
from ..live.parse import ParseStats, read_records
from ..live.views import Aggregator
from ._common import pid_arg, print_json, release_arg, replay_errors, status

EPILOG = """\
examples:
  pmemtrace replay run.jsonl                 # a 'pmemtrace watch --record' file
  cat /sys/kernel/tracing/trace > t.txt; pmemtrace replay t.txt
  trace-cmd record -e fs_dax ./app && trace-cmd report > t.txt && pmemtrace replay t.txt
  pmemtrace replay t.txt --kernel 6.1        # model profile for the reasons
  pmemtrace replay t.txt --pid 1234 --json   # one process, machine-readable
  pmemtrace replay t.txt --events            # also print every event

Input formats are detected: our JSON lines (header first), raw trace_pipe /
trace text (with or without the flags and (tgid) columns), and
'trace-cmd report' text.  Compressed .gz/.xz files are read directly; a
binary trace.dat must first go through 'trace-cmd report'.

Fallback reasons come from the reference model run on what each event shows
(VMA bounds, pgoff, max_pgoff, write flag, earlier faults on the file).  Text
traces carry no extents or device geometry, so reasons that depend on them
(extent-too-short, pfn-unaligned, pfn-no-devmap) show as 'unexplained' with
the evidence: record with 'pmemtrace watch --record' to get them.
"""


def add_parser(sub):
    p = sub.add_parser(
        "replay",
        help="show the watch views for a recorded or text trace (no root needed)",
        description="Read a 'pmemtrace watch --record' file, raw trace_pipe text or "
        "'trace-cmd report' text of fs_dax events and print one row per mapping: PMD "
        "faults, PTE faults, huge zero pages, fallbacks by reason, GUP, get_dev_pagemap, "
        "lost events.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="trace file ('-' for stdin)")
    p.add_argument("--kernel", metavar="RELEASE", type=release_arg,
                   help="kernel release for the model profile (default: the recording's header, else 6.12)")
    p.add_argument("--pid", type=pid_arg, help="only events of this process")
    p.add_argument("--events", action="store_true", help="print every event (kernel print format) first")
    p.add_argument("--no-reasons", action="store_true", help="do not run the model on fallbacks")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("--wide", action="store_true", help="exact VMA ranges (start-end) and whole names in the table")
    p.add_argument("--verify-reuse", action="store_true",
                   help="run the model for every fallback even when an identical situation was attributed "
                   "already, and report reuses that would have differed")
    p.set_defaults(func=run)
    return p


def replay(path, kernel=None, pid=None, reasons=True, on_event=None, verify_reuse=False):
    """Aggregate a trace file; returns (Aggregator, ParseStats, format, header)."""
    stats = ParseStats()
    fmt, stats, records = read_records(path, stats)
    agg = None
    header = None
    for rec in records:
        if agg is None:
            header = getattr(stats, "header", None)
            release = kernel or (header or {}).get("kernel") or "6.12"
            agg = Aggregator(CachedAttributor(Attributor(release=release), verify=verify_reuse)
                             if reasons else None)
        if pid is not None and rec[3] != pid:
            continue
        if on_event:
            name, fields, ts, rpid, comm, cpu = rec
            on_event(Event(name=name, fields=fields, ts=ts, pid=rpid, tid=rpid, comm=comm, cpu=cpu,
                           source="replay"))
        agg.add_record(*rec)
    if agg is None:
        agg = Aggregator()
        header = getattr(stats, "header", None)
    agg.lost += stats.lost
    return agg, stats, fmt, header


def run(args):
    def show(ev):
        print(f"{ev.ts or 0:.6f} {ev.comm or '-'}-{ev.pid} {ev.name}: {ev.format()}")

    with replay_errors(args.file):
        agg, stats, fmt, header = replay(args.file, kernel=args.kernel, pid=args.pid,
                                         reasons=not args.no_reasons,
                                         on_event=show if args.events and not args.json else None,
                                         verify_reuse=args.verify_reuse)
    if args.json:
        d = agg.to_json()
        d["input"] = {"format": fmt, **stats.to_json()}
        if isinstance(agg.attributor, CachedAttributor):
            d["attribution"] = agg.attributor.to_json()
        if header:
            d["header"] = header
        print_json(d)
    else:
        status(f"replay: {args.file}: {fmt}, {stats.events} events from {stats.lines} lines"
               + (f", {stats.bad} unparsed fs_dax lines (first: line {stats.first_bad[0]})"
                  if stats.bad else ""))
        print(agg.render(wide=args.wide))
        if args.verify_reuse and isinstance(agg.attributor, CachedAttributor):
            a = agg.attributor
            status(f"replay: --verify-reuse: {a.verified} reuses checked against the model, "
                   f"{a.mismatches} would have differed")
    if stats.events == 0:
        status("replay: no fs_dax events found")
    return 0
