"""tracefs backend: the fs_dax tracepoints through a private ftrace instance.

Used when bcc cannot run (no kernel headers, no kprobes, no bcc).  It sees
the fs_dax events only: no insert functions, get_dev_pagemap, GUP or
device-dax faults (those need kprobes).

Everything happens in ``instances/pmemtrace-<pid>``: the global trace
buffer and other users' settings are never touched, and removing the
instance on exit disables everything it enabled.
"""

import errno
import os
import select

from ..errors import KernelFeatureMissing, PrivilegeError
from .parse import ParseStats, parse_trace_text
from .probes import FS_DAX_TRACEPOINTS, fs_dax_tracepoints, tracefs_root


def _write(path, value):
    try:
        with open(path, "w") as f:
            f.write(value)
    except PermissionError:
        raise PrivilegeError(f"cannot write {path}: pmemtrace watch needs root (try sudo)") from None


def read_available(fd, chunk=1 << 20, limit=16 << 20):
    """What a non-blocking ``trace_pipe`` fd has now (a list of bytes), up
    to about *limit* bytes.  A read of trace_pipe returns at most one page
    (kernel/trace/trace.c tracing_read_pipe() caps cnt at PAGE_SIZE - 1), so
    a short read does not mean the pipe is empty: read until EAGAIN."""
    chunks = []
    total = 0
    while total < limit:
        try:
            b = os.read(fd, chunk)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                break
            raise
        if not b:
            break
        chunks.append(b)
        total += len(b)
    return chunks


def instance_losses(instance):
    """Events a tracefs instance's ring buffer lost: the per-CPU ``overrun``
    (overwritten, the default overwrite mode) plus ``dropped events``
    (refused when full, overwrite off), from ``per_cpu/cpu*/stats``."""
    n = 0
    d = os.path.join(instance, "per_cpu")
    try:
        for cpu in os.listdir(d):
            with open(os.path.join(d, cpu, "stats")) as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k.strip() in ("overrun", "dropped events"):
                        n += int(v.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return n


class TracefsBackend:
    name = "tracefs"

    def __init__(self, pid=None, buffer_kb=65536, root=None, skip=()):
        self.root = root or tracefs_root()
        if self.root is None:
            raise KernelFeatureMissing(
                "tracefs is not mounted: mount -t tracefs nodev /sys/kernel/tracing")
        self.tracepoints = fs_dax_tracepoints(self.root)
        if not {"dax_pmd_fault_done", "dax_pte_fault_done"} <= self.tracepoints:
            raise KernelFeatureMissing("this kernel has no fs_dax tracepoints (CONFIG_FS_DAX is off)")
        self.pid = pid
        self.skip = set(skip)  # tracepoints not to enable
        self.buffer_note = None
        self.buffer_kb = buffer_kb
        self.instance = os.path.join(self.root, "instances", f"pmemtrace-{os.getpid()}")
        self.fd = None
        self.stats = ParseStats()
        self._partial = ""
        self.enabled = []

    def missing(self):
        return ("sees fs_dax tracepoints only; no PMD insert, get_dev_pagemap, GUP or "
                "device-dax counts (those need bcc and kprobes)"
                + (f"; {self.buffer_note}" if self.buffer_note else ""))

    def probe_table(self):
        return [{"point": tp, "kind": "tracepoint",
                 "winner": f"fs_dax:{tp}" if tp in self.tracepoints else None}
                for tp in FS_DAX_TRACEPOINTS]

    def start(self):
        if os.geteuid() != 0 and not os.access(os.path.join(self.root, "instances"), os.W_OK):
            raise PrivilegeError("pmemtrace watch needs root to use tracefs (try sudo)")
        try:
            os.mkdir(self.instance)
        except PermissionError:
            raise PrivilegeError("pmemtrace watch needs root to use tracefs (try sudo)") from None
        except FileExistsError:
            pass
        try:
            try:
                _write(os.path.join(self.instance, "buffer_size_kb"), str(self.buffer_kb))
            except OSError as e:  # ENOMEM: keep the kernel's size; losses are still counted
                self.buffer_note = f"buffer of {self.buffer_kb} KiB per CPU refused ({e.strerror})"
            if self.pid:
                tids = [str(self.pid)]
                try:
                    tids = os.listdir(f"/proc/{self.pid}/task")
                except OSError:
                    pass
                _write(os.path.join(self.instance, "set_event_pid"), " ".join(tids))
                opt = os.path.join(self.instance, "options", "event-fork")
                if os.path.exists(opt):
                    _write(opt, "1")
            for tp in FS_DAX_TRACEPOINTS:
                if tp in self.tracepoints and tp not in self.skip:
                    _write(os.path.join(self.instance, "events", "fs_dax", tp, "enable"), "1")
                    self.enabled.append(tp)
            self.fd = os.open(os.path.join(self.instance, "trace_pipe"), os.O_RDONLY | os.O_NONBLOCK)
        except BaseException:
            self.close()
            raise

    def poll(self, timeout):
        """Events read within *timeout* seconds (a list)."""
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return []
        text = self._partial + b"".join(read_available(self.fd)).decode("utf-8", "replace")
        lines = text.split("\n")
        self._partial = lines.pop()
        return list(parse_trace_text(lines, self.stats))

    def pause(self):
        """Stop producing (tracing_on=0 in our instance) so that a final
        drain can empty the pipe."""
        try:
            _write(os.path.join(self.instance, "tracing_on"), "0")
        except OSError:
            pass

    def lost(self):
        """Events the ring buffer lost (per-CPU stats) or [LOST] markers said."""
        return max(instance_losses(self.instance), self.stats.lost)

    def close(self):
        """Disable what we enabled and remove the instance (idempotent)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if os.path.isdir(self.instance):
            for tp in self.enabled:
                try:
                    with open(os.path.join(self.instance, "events", "fs_dax", tp, "enable"), "w") as f:
                        f.write("0")
                except OSError:
                    pass
            try:
                os.rmdir(self.instance)
            except OSError:
                pass
        self.enabled = []
