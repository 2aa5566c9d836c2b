"""What the kernel actually did for a process: fs_dax tracepoint events
(tracefs, root) collected for a few seconds and laid on the same 2 MiB
chunks as the prediction, for ``pmemtrace diagnose --pid PID --observe S``.

It records in a private tracefs instance (``pmemtrace-<pid>-observe``,
:mod:`pmemtrace.live.tracefs`): the global trace buffer, ``tracing_on`` and
other users' settings are never touched, and the instance is removed on
return, also on errors and Ctrl-C.
"""

import time

from ..errors import KernelFeatureMissing
from ..live import tracefs

#: per-CPU buffer: the pipe is drained while recording, so this only has to
#: hold a burst between two reads
BUFFER_KB = 8192


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
    """fs_dax events of *pid* (and its children) for *seconds*; *during*, if
    given, is called once tracing is on (tests use it to touch memory)."""
    from ..live.parse import ParseStats, parse_trace_text

    t = tracefs_dir(roots)
    tracefs.remove_orphans_and_report(t)
    inst = tracefs.Instance("observe", t, what="--observe")
    chunks = []
    try:
        inst.create()
        inst.set_buffer_kb(BUFFER_KB)
        inst.follow_pid(pid, proc_root=roots.proc())
        inst.enable("fs_dax")
        inst.open_pipe()
        if during is not None:
            during()
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            if inst.wait(min(left, 0.5)):
                chunks += inst.read()
        inst.pause()
        chunks += inst.read()  # what was buffered when tracing stopped
    finally:
        inst.close()
    stats = ParseStats()
    text = b"".join(chunks).decode("utf-8", "replace")
    return list(parse_trace_text(text.splitlines(), stats))


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
