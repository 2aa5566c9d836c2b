"""pmemtrace watch: live view of DAX faults, fallbacks and why."""

import argparse
import json
import os
import time

from ..errors import UsageError
from ..live.attribute import Attributor
from ..live.record import Recorder, make_header, recording_devices
from ..live.views import Aggregator
from ..metrics import outputs as metrics_outputs
from ._common import add_max_rows_arg, out_path_arg, pid_arg, release_arg, running_pid, seconds_arg, status

EPILOG = """\
examples:
  pmemtrace watch                          # all processes, refresh every 5 s, Ctrl-C ends
  pmemtrace watch --path /mnt/pmem         # only files of the filesystem at /mnt/pmem
  pmemtrace watch --pid 1234 -i 1 -d 30    # one process, 1 s refresh, 30 s
  pmemtrace watch --json                   # one JSON object per interval, then a summary
  pmemtrace watch --json --events          # one JSON object per event
  pmemtrace watch --record run.rec         # also record every event; 'pmemtrace replay run.rec'
  pmemtrace watch --list-probes            # the probe table against this kernel
  pmemtrace watch --backend tracefs        # fs_dax tracepoints only, no bcc
  pmemtrace watch --prometheus 9101 -i 15  # Prometheus metrics at :9101/metrics (docs/metrics.md)
  pmemtrace watch --textfile /var/lib/prometheus/node-exporter   # for node_exporter

Rows: one per mapping (process, device:inode, VMA).  PMD = 2 MiB faults
mapped, PTE = 4 KiB DAX faults, HZP = huge zero pages for holes, FALLBK =
PMD attempts that fell back to 4 KiB, broken down by reason underneath.  A
fallback the reference model cannot reproduce from what the trace showed is
'unexplained', with the evidence.  Backends: bcc (needs bcc, kernel headers
and kprobes) or tracefs (fs_dax tracepoints only).  Needs root.
Status lines go to stderr; stdout carries only the views.
"""


def add_parser(sub):
    p = sub.add_parser(
        "watch",
        help="live view of DAX PMD/PTE faults, fallbacks and their reasons (root)",
        description="Trace the kernel's DAX fault paths and show, per mapping, PMD faults, PTE "
        "faults, huge zero pages, fallbacks by reason, GUP pins, get_dev_pagemap calls and "
        "lost events.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--pid", type=pid_arg, help="only this process")
    p.add_argument("--path", help="only this file, or files of the filesystem mounted here")
    p.add_argument("-i", "--interval", type=seconds_arg, default=5.0, help="seconds between views (default 5)")
    p.add_argument("-d", "--duration", type=seconds_arg, help="stop after this many seconds")
    p.add_argument(
        "--json", action="store_true", help="JSON lines on stdout (per interval, or per event with --events)"
    )
    p.add_argument("--events", action="store_true", help="print every event")
    p.add_argument(
        "--record",
        metavar="FILE",
        type=out_path_arg,
        help="record every event (replay with 'pmemtrace replay'): as the kernel hands them over "
        "(tracefs pages, bcc ring records), else JSON lines (--record-format)",
    )
    p.add_argument(
        "--record-format",
        choices=("auto", "jsonl"),
        default="auto",
        help="auto: what the kernel hands over as read (tracefs pages, bcc ring records), "
        "else JSON lines; jsonl: JSON lines always",
    )
    p.add_argument("--backend", choices=("auto", "bcc", "tracefs"), default="auto")
    p.add_argument(
        "--buffer-mb",
        type=int,
        default=64,
        metavar="MB",
        help="kernel event buffer: the bcc ring buffer, or each CPU's tracefs buffer "
        "(default 64; a burst larger than this before it is read is lost, and counted)",
    )
    p.add_argument("--list-probes", action="store_true", help="show the probe table against this kernel and exit")
    p.add_argument(
        "--kernel", metavar="RELEASE", type=release_arg, help="model profile for reasons (default: running kernel)"
    )
    p.add_argument("--no-reasons", action="store_true", help="do not run the model on fallbacks")
    add_max_rows_arg(p)
    metrics_outputs.add_args(p, watch=True)
    p.add_argument("--ebpf", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=run)
    return p


def list_probes(args):
    from ..live.bcc_backend import attach_plan, why_not_bcc
    from ..live.probes import kernel_functions, render
    from ..live.tracefs import fs_dax_tracepoints, tracefs_root

    root = tracefs_root()
    # as this watch would attach them: counting in the kernel unless every
    # event is wanted
    every = bool(getattr(args, "events", False) or getattr(args, "record", None))
    res = attach_plan(kernel_functions(), fs_dax_tracepoints(root), aggregate=not every)
    why = why_not_bcc()
    if args.json:
        print(
            json.dumps(
                {"tracefs": root, "bcc_usable": why is None, "bcc_missing": why, "probes": [r.to_json() for r in res]},
                indent=1,
            )
        )
    else:
        print(render(res))
        if root is None:
            status("watch: tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing)")
        status("watch: backend bcc" if why is None else f"watch: backend tracefs (bcc cannot run: missing {why})")
    return 0


def run(args):
    if args.list_probes:
        return list_probes(args)
    if not args.interval > 0:  # also NaN
        raise UsageError("--interval must be a positive number of seconds")
    if args.ebpf:
        from ..live.bcc_backend import BccBackend

        b = BccBackend(pid=args.pid)
        print("// cflags: " + " ".join(b.cflags()))
        print(b.source())
        return 0
    if os.geteuid() != 0:
        from ..errors import PrivilegeError

        raise PrivilegeError(
            "pmemtrace watch needs root (bcc: CAP_BPF+CAP_PERFMON+CAP_SYS_ADMIN; tracefs: write access): try sudo"
        )
    from ..live.files import PathFilter

    filt = PathFilter(args.path) if args.path else None
    if args.pid:
        running_pid(args.pid)
    if args.buffer_mb < 1:
        raise UsageError("--buffer-mb must be at least 1")
    # port, textfile directory and the one-exporter lock, before anything is attached
    metrics = metrics_outputs.watch_metrics(args)
    try:
        return _watch(args, filt, metrics)
    finally:
        if metrics is not None:
            metrics.close()


def _watch(args, filt, metrics):
    from ..live.files import LiveFiles
    from ..live.session import Session, choose_backend

    backend, why = choose_backend(
        args.backend,
        args.pid,
        args.buffer_mb,
        all_events=bool(args.events or args.record),
        record_only=bool(args.record and not args.events and args.record_format == "auto"),
        reasons=not args.no_reasons,
        file_filter=None if filt is None else (filt.dev, filt.ino),
    )
    files = LiveFiles()
    attributor = None if args.no_reasons else Attributor(release=args.kernel or os.uname().release, file_info=files)
    agg = Aggregator(attributor, max_rows=args.max_rows)
    if metrics is not None:
        metrics.attach(agg, backend.name, args.kernel)
    pid = args.pid

    def keep(ev):
        return (not pid or ev.pid == pid) and (filt is None or filt(ev))

    rec = None
    if args.record:
        rec = Recorder(
            args.record,
            make_header(backend.name, probes=backend.probe_table(), devices=recording_devices()),
            binary=args.record_format == "auto",
        )
    if metrics is not None:
        on_interval = metrics.tick  # an exporter is a service: no table per interval
    else:
        on_interval = None if args.events else lambda: _print_view(agg, args.json, backend.name)
    session = Session(
        backend,
        agg,
        keep=keep,
        recorder=rec,
        seen_pid=files.pids.add,
        on_event=(lambda ev: _print_event(ev, args.json)) if args.events else None,
    )
    try:
        session.start()
        status(
            f"watch: backend {backend.name}"
            + (f" (bcc cannot run: missing {why})" if why and backend.name == "tracefs" else "")
            + (" (program loaded from the compiled-program cache)" if getattr(backend, "cached", False) else "")
        )
        missing = backend.missing()
        if missing:
            status(f"watch: not traced: {missing}")
        status(
            f"Tracing DAX faults{' on ' + args.path if args.path else ''}"
            f"{f' of pid {args.pid:d}' if args.pid else ''}... Hit Ctrl-C to end."
        )
        session.run(
            duration=args.duration,
            interval=args.interval,
            on_interval=on_interval,
        )
    finally:
        if rec is not None:
            if not session.complete and rec.events == 0:
                rec.discard()  # nothing recorded: leave nothing behind
            else:
                path = rec.close(session.complete)
                status(f"watch: recorded {rec.events} events to {path}" + ("" if session.complete else " (incomplete)"))
    if metrics is not None:
        metrics.tick()  # the final counts (also into the textfile)
    if args.json:
        d = agg.to_json()
        d.update({"type": "summary", "backend": backend.name})
        print(json.dumps(d), flush=True)
    else:
        print("summary:")
        print(agg.render(), flush=True)
    if agg.lost:
        status(f"watch: {agg.lost} events were lost (raise the buffer or narrow with --pid/--path)")
    if agg.folded_events:
        status(
            f"watch: {agg.folded_events} events of mappings beyond --max-rows {agg.max_rows} "
            "were counted in the 'other' row"
        )
    return 0


def _print_event(ev, as_json):
    if as_json:
        d = ev.to_json()
        d["type"] = "event"
        print(json.dumps(d), flush=True)
    else:
        print(f"{ev.ts or 0:.6f} {ev.comm}-{ev.pid} {ev.name}: {ev.format()}", flush=True)


def _print_view(agg, as_json, backend):
    if as_json:
        d = agg.to_json()
        d.update({"type": "interval", "time": time.time(), "backend": backend})
        print(json.dumps(d), flush=True)
    else:
        print(time.strftime("%H:%M:%S"))
        print(agg.render(), flush=True)
