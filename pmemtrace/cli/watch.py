"""pmemtrace watch: live view of DAX faults, fallbacks and why."""

import argparse
import json
import os
import signal
import time

from ..errors import KernelFeatureMissing, UsageError
from ..live.attribute import Attributor, FileInfo
from ..live.record import Recorder, make_header
from ..live.views import Aggregator
from ._common import out_path_arg, pid_arg, release_arg, running_pid, seconds_arg, status

EPILOG = """\
examples:
  pmemtrace watch                          # all processes, refresh every 5 s, Ctrl-C ends
  pmemtrace watch --path /mnt/pmem         # only files of the filesystem at /mnt/pmem
  pmemtrace watch --pid 1234 -i 1 -d 30    # one process, 1 s refresh, 30 s
  pmemtrace watch --json                   # one JSON object per interval, then a summary
  pmemtrace watch --json --events          # one JSON object per event
  pmemtrace watch --record run.jsonl       # also record every event; 'pmemtrace replay run.jsonl'
  pmemtrace watch --list-probes            # the probe table against this kernel
  pmemtrace watch --backend tracefs        # fs_dax tracepoints only, no bcc

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
    p.add_argument("--json", action="store_true", help="JSON lines on stdout (per interval, or per event with --events)")
    p.add_argument("--events", action="store_true", help="print every event")
    p.add_argument("--record", metavar="FILE", type=out_path_arg, help="record events as JSON lines (replay with 'pmemtrace replay')")
    p.add_argument("--backend", choices=("auto", "bcc", "tracefs"), default="auto")
    p.add_argument("--buffer-mb", type=int, default=64, metavar="MB",
                   help="kernel event buffer: the bcc ring buffer, or each CPU's tracefs buffer "
                   "(default 64; a burst larger than this before it is read is lost, and counted)")
    p.add_argument("--list-probes", action="store_true", help="show the probe table against this kernel and exit")
    p.add_argument("--kernel", metavar="RELEASE", type=release_arg, help="model profile for reasons (default: running kernel)")
    p.add_argument("--no-reasons", action="store_true", help="do not run the model on fallbacks")
    p.add_argument("--ebpf", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=run)
    return p


def _kdev(st_dev):
    return (os.major(st_dev) << 20) | os.minor(st_dev)


class PathFilter:
    def __init__(self, path):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise UsageError(f"--path {path}: no such file or directory") from None
        self.dev = _kdev(st.st_dev)
        self.ino = st.st_ino if not os.path.isdir(path) else None

    def __call__(self, ev):
        d = ev.fields.get("dev")
        if d is None:
            return True  # probe hits without a file: joined to rows by the views
        return d == self.dev and (self.ino is None or ev.fields.get("ino") == self.ino)


class LiveFiles:
    """(dev, ino) -> FileInfo with FIEMAP extents, found via /proc/<pid>/maps."""

    def __init__(self, root="/"):
        self.root = root  # where sysfs lives (tests point it at a fixture tree)
        self.cache = {}
        self.devices = {}
        self.pids = set()

    def _path(self, dev, ino):
        for pid in list(self.pids):
            try:
                with open(f"/proc/{pid}/maps") as f:
                    for line in f:
                        parts = line.split(None, 5)
                        if len(parts) < 6:
                            continue
                        maj, mnr = (int(x, 16) for x in parts[3].split(":"))
                        if (maj << 20 | mnr) == dev and int(parts[4]) == ino:
                            return parts[5].strip()
            except (OSError, ValueError):
                continue
        return None

    def __call__(self, dev, ino):
        key = (dev, ino)
        if key in self.cache:
            return self.cache[key]
        info = None
        path = self._path(dev, ino)
        if path and not path.startswith("/dev/"):
            try:
                from ..workload.engine import fiemap
                st = os.stat(path)
                if st.st_ino == ino:
                    ext = fiemap(path)
                    info = FileInfo(extents=[e.to_case() for e in ext], size=st.st_size,
                                    device=self._device(dev))
            except Exception:  # engine not built, file gone, fs without FIEMAP
                info = None
        self.cache[key] = info
        return info

    def _device(self, dev):
        """The device geometry (data start, size, map, align) of the pmem
        block device behind kernel dev_t *dev*, from sysfs (None if unknown:
        the attributor then assumes an aligned device and says so)."""
        if dev not in self.devices:
            from ..workload.target import fsdax_device
            geo, _notes = fsdax_device(os.makedev(dev >> 20, dev & 0xFFFFF), self.root)
            self.devices[dev] = geo
        return self.devices[dev]


#: Fault-start events the views do not need: a PTE fault is counted from its
#: "done" event.  Left out unless every event is wanted (--events, --record),
#: which halves the event rate of a 4 KiB-fault-heavy workload.
START_EVENTS = ("dax_pte_fault",)


def choose_backend(name, pid, buffer_mb=64, all_events=True):
    from ..live.bcc_backend import BccBackend, why_not_bcc
    from ..live.tracefs import TracefsBackend

    skip = () if all_events else START_EVENTS
    if name in ("auto", "bcc"):
        why = why_not_bcc()
        if why is None:
            return BccBackend(pid=pid, ringbuf_pages=ringbuf_pages(buffer_mb), skip=skip), None
        if name == "bcc":
            raise KernelFeatureMissing(f"bcc backend cannot run here: missing {why}")
        return TracefsBackend(pid=pid, buffer_kb=buffer_mb * 1024, skip=skip), why
    return TracefsBackend(pid=pid, buffer_kb=buffer_mb * 1024, skip=skip), None


def ringbuf_pages(mb):
    """BPF ring buffers are a power of two pages: the largest not above *mb*."""
    pages = max(1, int(mb * 256))
    return 1 << (pages.bit_length() - 1)


def list_probes(args):
    from ..live.bcc_backend import why_not_bcc
    from ..live.probes import fs_dax_tracepoints, kernel_functions, render, resolve, tracefs_root

    root = tracefs_root()
    res = resolve(kernel_functions(), fs_dax_tracepoints(root))
    why = why_not_bcc()
    if args.json:
        print(json.dumps({"tracefs": root, "bcc_usable": why is None, "bcc_missing": why,
                          "probes": [r.to_json() for r in res]}, indent=1))
    else:
        print(render(res))
        if root is None:
            status("watch: tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing)")
        status("watch: backend bcc" if why is None else f"watch: backend tracefs (bcc cannot run: missing {why})")
    return 0


def run(args):
    if args.list_probes:
        return list_probes(args)
    if args.interval <= 0:
        raise UsageError("--interval must be positive")
    if args.ebpf:
        from ..live.bcc_backend import BccBackend
        b = BccBackend(pid=args.pid)
        print("// cflags: " + " ".join(b.cflags()))
        print(b.source())
        return 0
    if os.geteuid() != 0:
        from ..errors import PrivilegeError
        raise PrivilegeError("pmemtrace watch needs root (bcc: CAP_BPF+CAP_PERFMON; tracefs: write access): try sudo")
    filt = PathFilter(args.path) if args.path else None
    if args.pid:
        running_pid(args.pid)
    if args.buffer_mb < 1:
        raise UsageError("--buffer-mb must be at least 1")
    backend, why = choose_backend(args.backend, args.pid, args.buffer_mb,
                                  all_events=bool(args.events or args.record))
    files = LiveFiles()
    attributor = None if args.no_reasons else Attributor(release=args.kernel or os.uname().release,
                                                         file_info=files)
    agg = Aggregator(attributor)
    rec = None
    # Ctrl-C and SIGTERM set a flag the loop checks after every poll (at most
    # 0.5 s): an exception raised from the handler would land inside bcc's
    # ring-buffer callback, where ctypes prints and swallows it and watch
    # would run on (seen in the lab under a GUP workload's event burst).
    stopping = []
    old_handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def on_stop(signum, frame):
        stopping.append(signum)

    def on_term_early(signum, frame):
        raise KeyboardInterrupt  # before tracing runs (bcc compiling): stop at once

    signal.signal(signal.SIGTERM, on_term_early)
    complete = False
    try:
        if args.record:
            rec = Recorder(args.record, make_header(backend.name, probes=backend.probe_table(),
                                                    devices=_devices()))
        backend.start()
        for sig in old_handlers:
            signal.signal(sig, on_stop)
        status(f"watch: backend {backend.name}" + (f" (bcc cannot run: missing {why})" if why and backend.name == "tracefs" else ""))
        missing = backend.missing()
        if missing:
            status(f"watch: not traced: {missing}")
        status(f"Tracing DAX faults{' on ' + args.path if args.path else ''}"
               f"{' of pid %d' % args.pid if args.pid else ''}... Hit Ctrl-C to end.")
        start = time.monotonic()
        next_view = start + args.interval
        last_lost = 0
        while not stopping:
            now = time.monotonic()
            if args.duration is not None and now - start >= args.duration:
                break
            timeout = next_view - now
            if args.duration is not None:
                timeout = min(timeout, start + args.duration - now)
            for ev in backend.poll(max(0.0, min(timeout, 0.5))):
                if args.pid and ev.pid != args.pid:
                    continue
                if filt and not filt(ev):
                    continue
                if ev.pid:
                    files.pids.add(ev.pid)
                agg.add(ev)
                if rec:
                    rec.event(ev)
                if args.events:
                    _print_event(ev, args.json)
            lost = backend.lost()
            if lost > last_lost:
                if rec:
                    rec.lost_events(lost - last_lost)
                last_lost = lost
            agg.lost = lost
            if time.monotonic() >= next_view:
                next_view += args.interval
                if not args.events:
                    _print_view(agg, args.json, backend.name)
        complete = True
    except KeyboardInterrupt:
        complete = True
    finally:
        # drain what is already buffered, then detach everything
        try:
            if backend.__dict__.get("bpf") is not None or getattr(backend, "fd", None) is not None:
                if hasattr(backend, "pause"):
                    backend.pause()
                # until the buffer is empty (what it holds was traced, not
                # lost), bounded in case the probes keep firing
                drain_end = time.monotonic() + 120
                while time.monotonic() < drain_end:
                    evs = backend.poll(0)
                    if not evs:
                        break
                    for ev in evs:
                        if (not args.pid or ev.pid == args.pid) and (not filt or filt(ev)):
                            agg.add(ev)
                            if rec:
                                rec.event(ev)
                agg.lost = backend.lost()
        except Exception:
            pass
        backend.close()
        for sig, h in old_handlers.items():
            signal.signal(sig, h)
        if rec and not complete and rec.events == 0:
            rec.f.close()
            os.unlink(rec.part)  # nothing recorded: leave nothing behind
            rec = None
        if rec:
            if agg.lost > rec.lost:
                rec.lost_events(agg.lost - rec.lost)
            path = rec.close(complete)
            status(f"watch: recorded {rec.events} events to {path}")
    if args.json:
        d = agg.to_json()
        d.update({"type": "summary", "backend": backend.name})
        print(json.dumps(d), flush=True)
    else:
        print("summary:")
        print(agg.render(), flush=True)
    if agg.lost:
        status(f"watch: {agg.lost} events were lost (raise the buffer or narrow with --pid/--path)")
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


def _devices():
    """Namespaces/devices for the recording header (best effort, never fails)."""
    out = []
    base = "/sys/bus/nd/devices"
    try:
        for n in sorted(os.listdir(base)):
            if n.startswith("namespace"):
                d = {"name": n}
                for k in ("mode", "size", "resource", "align"):
                    try:
                        with open(os.path.join(base, n, k)) as f:
                            d[k] = f.read().strip()
                    except OSError:
                        pass
                out.append(d)
    except OSError:
        pass
    return out
