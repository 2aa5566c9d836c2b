"""What the kernel actually did for a process: fs_dax tracepoint events
(tracefs, root) collected for a few seconds and laid on the same 2 MiB
chunks as the prediction, for ``pmemtrace diagnose --pid PID --observe S``.

It takes over tracefs while it runs (as ``pmemtrace watch`` does) and turns
everything it enabled off again, also on errors and Ctrl-C.
"""

import os
import time

from ..errors import KernelFeatureMissing, PrivilegeError
from ..events import decode_vm_fault


def tracefs_dir(roots):
    for t in (roots.sys("kernel", "tracing"), roots.sys("kernel", "debug", "tracing")):
        if os.path.isdir(os.path.join(t, "events", "fs_dax")):
            return t
    raise KernelFeatureMissing("no fs_dax tracepoints under /sys/kernel/tracing: mount tracefs "
                               "(mount -t tracefs nodev /sys/kernel/tracing) as root")


def _w(t, rel, value):
    with open(os.path.join(t, rel), "w") as f:
        f.write(value)


def collect(roots, pid, seconds, during=None):
    """fs_dax events of *pid* (and its children) for *seconds*; *during*, if
    given, is called once tracing is on (tests use it to touch memory)."""
    from ..live.parse import parse_trace_text

    t = tracefs_dir(roots)
    if not os.access(os.path.join(t, "tracing_on"), os.W_OK):
        raise PrivilegeError("--observe needs root (it enables fs_dax tracepoints in tracefs)")
    try:
        _w(t, "tracing_on", "0")
        _w(t, "trace", "")
        _w(t, "set_event_pid", str(pid))
        _w(t, "events/fs_dax/enable", "1")
        _w(t, "tracing_on", "1")
        if during is not None:
            during()
        time.sleep(seconds)
        _w(t, "tracing_on", "0")
        with open(os.path.join(t, "trace")) as f:
            lines = [ln.rstrip("\n") for ln in f if not ln.startswith("#")]
    except PermissionError:
        raise PrivilegeError("--observe needs root (it enables fs_dax tracepoints in tracefs)") from None
    finally:
        for rel, v in (("tracing_on", "0"), ("events/fs_dax/enable", "0"), ("set_event_pid", ""), ("trace", "")):
            try:
                _w(t, rel, v)
            except OSError:
                pass
    return list(parse_trace_text(lines))


def outcome_of(events):
    """pmd / pte / huge-zero / none from the fs_dax events of one chunk."""
    out = "none"
    for e in events:
        if e.name == "dax_pmd_fault_done":
            res = decode_vm_fault(e.fields.get("result", 0))
            if "FALLBACK" not in res and "SIGBUS" not in res:
                return "pmd"
            out = "pte"
        elif e.name == "dax_pmd_load_hole":
            return "huge-zero"
        elif e.name in ("dax_pte_fault_done", "dax_load_hole"):
            out = "pte"
    return out


def annotate(strips, events):
    """Set ``chunk.observed`` (and ``observed_events``) on mapping strips."""
    for s in strips:
        start = s.details.get("start")
        if start is None:
            continue
        for ch in s.chunks:
            lo = start + ch.offset
            hi = lo + ch.length
            evs = [e for e in events if lo <= e.fields.get("address", -1) < hi]
            ch.observed = outcome_of(evs)
            ch.observed_events = len(evs)
