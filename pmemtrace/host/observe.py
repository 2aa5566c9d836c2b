"""What the kernel actually did for a process: fs_dax tracepoint events
(tracefs, root) collected for a few seconds and laid on the same 2 MiB
chunks as the prediction, for ``pmemtrace diagnose --pid PID --observe S``.

It records in a private tracefs instance (``pmemtrace-<pid>-observe``,
:mod:`pmemtrace.live.tracefs`), read as ``run`` and ``watch`` read theirs:
the global trace buffer, ``tracing_on`` and other users' settings are never
touched, the instance is removed on return, also on errors and Ctrl-C, and
every lost event is counted.
"""

import time

from ..errors import KernelFeatureMissing
from ..live import tracefs


def tracefs_dir(roots):
    """The tracefs root under the injectable sysfs root, with fs_dax events."""
    t = tracefs.tracefs_root(roots.sys())
    if t is None or "dax_pmd_fault_done" not in tracefs.fs_dax_tracepoints(t):
        raise KernelFeatureMissing(
            "no fs_dax tracepoints under /sys/kernel/tracing: mount tracefs "
            "(mount -t tracefs nodev /sys/kernel/tracing) as root"
        )
    return t


def collect(roots, pid, seconds, during=None):
    """``(events, lost)``: the fs_dax events of *pid* (and its children)
    for *seconds*, through the capture path of ``run`` and ``watch``
    (:class:`pmemtrace.live.tracefs.TraceCapture`: binary per-CPU reads,
    losses counted); *during*, if given, is called once tracing is on
    (tests use it to touch memory)."""
    t = tracefs_dir(roots)
    tracefs.remove_orphans_and_report(t)
    cap = tracefs.TraceCapture("observe", t, what="--observe")
    try:
        cap.start(pid)
        if cap.error is not None:
            raise cap.error
        if during is not None:
            during()
        time.sleep(seconds)
        events = cap.stop()
    finally:
        cap.close()
    return events, cap.lost


def outcome_of(events):
    """pmd / pte / huge-zero / none from the fs_dax events of one chunk."""
    return tracefs.chunk_outcome(events)


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
