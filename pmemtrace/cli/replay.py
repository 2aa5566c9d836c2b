"""pmemtrace replay: the watch views, offline, from a recording or a text trace."""

import argparse
import gc

from ..live.attrcache import CachedAttributor
from ..live.session import replay
from ._common import add_max_rows_arg, pid_arg, print_json, release_arg, replay_errors, status

EPILOG = """\
examples:
  pmemtrace replay run.rec                   # a 'pmemtrace watch --record' file (pages or JSON lines)
  cat /sys/kernel/tracing/trace > t.txt; pmemtrace replay t.txt
  trace-cmd record -e fs_dax ./app && pmemtrace replay trace.dat
  pmemtrace replay t.txt --kernel 6.1        # model profile for the reasons
  pmemtrace replay t.txt --pid 1234 --json   # one process, machine-readable
  pmemtrace replay t.txt --events            # also print every event

Input formats are detected: our recordings (tracefs pages or JSON lines), raw trace_pipe /
trace text (with or without the flags and (tgid) columns), 'trace-cmd report'
text, and trace-cmd's binary trace.dat (file versions 6 and 7, uncompressed,
zstd or zlib: what Debian's trace-cmd writes), read directly, with the
traced kernel's release from the file.  Compressed .gz/.xz text is read
directly too.  A text trace in a plain file and a .dat are read by a
compiled path when it is built (the same output, several times faster);
PMEMTRACE_PURE_PYTHON=1 uses the pure-Python path.

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
        description="Read a 'pmemtrace watch --record' file, raw trace_pipe text, "
        "'trace-cmd report' text or a trace-cmd .dat of fs_dax events and print one row per mapping: PMD "
        "faults, PTE faults, huge zero pages, fallbacks by reason, GUP, get_dev_pagemap, "
        "lost events.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="trace file ('-' for stdin)")
    p.add_argument(
        "--kernel",
        metavar="RELEASE",
        type=release_arg,
        help="kernel release for the model profile (default: the recording's header, else 6.12)",
    )
    p.add_argument("--pid", type=pid_arg, help="only events of this process")
    p.add_argument("--events", action="store_true", help="print every event (kernel print format) first")
    p.add_argument("--no-reasons", action="store_true", help="do not run the model on fallbacks")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("--wide", action="store_true", help="exact VMA ranges (start-end) and whole names in the table")
    p.add_argument(
        "--verify-reuse",
        action="store_true",
        help="run the model for every fallback even when an identical situation was attributed "
        "already, and report reuses that would have differed",
    )
    add_max_rows_arg(p)
    p.set_defaults(func=run)
    return p


def run(args):
    def show(ev):
        print(f"{ev.ts or 0:.6f} {ev.comm or '-'}-{ev.pid} {ev.name}: {ev.format()}")

    # the records are acyclic and short-lived: the cyclic collector's passes
    # over them cost a third of a .dat replay (bench_dat.py) and free nothing
    gc.disable()
    try:
        with replay_errors(args.file):
            agg, src = replay(
                args.file,
                kernel=args.kernel,
                pid=args.pid,
                reasons=not args.no_reasons,
                on_event=show if args.events and not args.json else None,
                max_rows=args.max_rows,
                verify_reuse=args.verify_reuse,
            )
    finally:
        gc.enable()
    stats, fmt, header = src.stats, src.fmt, src.header
    if args.json:
        d = agg.to_json()
        d["input"] = {"format": fmt, **stats.to_json()}
        if src.incomplete:
            d["input"]["incomplete"] = src.incomplete
        if isinstance(agg.attributor, CachedAttributor):
            d["attribution"] = agg.attributor.to_json()
        if header:
            d["header"] = header
        print_json(d)
    else:
        status(
            f"replay: {args.file}: {fmt}, {stats.events} events from {stats.lines} lines"
            + (f", {stats.bad} unparsed fs_dax lines (first: line {stats.first_bad[0]})" if stats.bad else "")
        )
        print(agg.render(wide=args.wide))
        if args.verify_reuse and isinstance(agg.attributor, CachedAttributor):
            a = agg.attributor
            status(
                f"replay: --verify-reuse: {a.verified} reuses checked against the model, "
                f"{a.mismatches} would have differed"
            )
    if src.incomplete:
        status(f"replay: {args.file} is incomplete: {src.incomplete}")
    if stats.lost_unknown:
        status(
            f"replay: the kernel lost events before {stats.lost_unknown} ring-buffer pages without counting "
            "them: more were lost than 'lost' says"
        )
    if stats.events == 0:
        status("replay: no fs_dax events found")
    if agg.folded_events:
        status(
            f"replay: {agg.folded_events} events of mappings beyond --max-rows {agg.max_rows} "
            "were counted in the 'other' row"
        )
    return 0
