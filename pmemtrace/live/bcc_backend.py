"""bcc backend: bpf/pmemtrace.bpf.c compiled at run time.

bcc is imported here only (lazily): ``import pmemtrace`` never needs it.
It comes from Debian's python3-bpfcc and imports only in /usr/bin/python3
(or a venv made from it with --system-site-packages).
"""

import ctypes
import os
import platform

from ..errors import KernelFeatureMissing, PrivilegeError, ProbeAttachError
from . import bpf_file
from .decode import EVENT_SIZE, decode
from .probes import hole_field, kernel_functions, resolve
from .tracefs import fs_dax_tracepoints, tracefs_root

DEVDAX_ORDER = {0: 0, 1: 9, 2: 18, 9: 9, 18: 18}  # enum page_entry_size (6.1) or order (6.6+)


def why_not_bcc():
    """None if bcc can plausibly run here, else a sentence saying what is missing."""
    missing = []
    try:
        import bcc  # noqa: F401
    except ImportError:
        missing.append("the bcc Python module (apt install python3-bpfcc; run with /usr/bin/python3)")
    rel = platform.release()
    if not (os.path.isdir(f"/lib/modules/{rel}/build") or os.path.exists("/sys/kernel/kheaders.tar.xz")):
        missing.append(f"kernel headers for {rel} (/lib/modules/{rel}/build)")
    if not (
        os.path.exists("/sys/bus/event_source/devices/kprobe")
        or os.path.exists(os.path.join(tracefs_root() or "/nonexistent", "kprobe_events"))
    ):
        missing.append("kprobes (CONFIG_KPROBES)")
    return "; ".join(missing) or None


class BccBackend:
    """bpf/pmemtrace.bpf.c: the fs_dax tracepoints plus kprobes on the PMD
    insert functions, get_dev_pagemap, GUP and device-dax faults.

    Everything bcc attaches is owned by file descriptors of this process
    (perf kprobe PMU, tracepoint perf events, the ring buffer map), so a
    killed watch leaves nothing in the kernel; only on a kernel without the
    kprobe PMU does bcc write ``p_<function>_bcc_<pid>`` kprobe events,
    which :func:`pmemtrace.live.tracefs.remove_orphans` removes."""

    name = "bcc"

    def __init__(self, pid=None, ringbuf_pages=4096, skip=()):
        self.pid = pid
        self.skip = set(skip)  # tracepoints not to attach (compiled out)
        self.ringbuf_pages = ringbuf_pages
        self.root = tracefs_root()
        self.functions = kernel_functions()
        self.tracepoints = fs_dax_tracepoints(self.root)
        self.resolved = resolve(self.functions, self.tracepoints)
        self.bpf = None
        self.pending = []
        self._devdax = {}
        self.failed = []

    def cflags(self):
        d = os.path.dirname(bpf_file("pmemtrace.h"))
        flags = [
            "-w",
            f"-I{d}",
            f"-DPMT_FILTER_PID={int(self.pid or 0)}",
            f"-DPMT_RINGBUF_PAGES={int(self.ringbuf_pages)}",
        ]
        hf = hole_field(self.root) if self.root else None
        if hf == "zero_page":
            flags.append("-DPMT_HOLE_ZERO_PAGE=1")
        for r in self.resolved:
            if r.point.kind == "tracepoint" and r.winner and r.point.name not in self.skip:
                # the load-hole events need the field name
                if r.point.name.startswith("dax_pmd_load_hole") and not hf:
                    continue
                flags.append(f"-DPMT_TP_{r.point.name}=1")
        return flags

    def source(self):
        with open(bpf_file("pmemtrace.bpf.c")) as f:
            return f.read()

    def missing(self):
        m = [f"{r.point.name} ({r.note})" for r in self.resolved if r.winner is None]
        m += [f"{n} (attach failed: {e})" for n, e in self.failed]
        return "; ".join(m)

    def probe_table(self):
        out = []
        for r in self.resolved:
            d = r.to_json()
            d["attached"] = r.winner is not None and r.point.name not in dict(self.failed)
            out.append(d)
        return out

    def start(self):
        if os.geteuid() != 0:
            raise PrivilegeError("pmemtrace watch needs root (or CAP_BPF+CAP_PERFMON) for bcc: try sudo")
        try:
            from bcc import BPF
        except ImportError:
            raise KernelFeatureMissing(
                "bcc is not importable: apt install python3-bpfcc and run pmemtrace with /usr/bin/python3"
            ) from None
        if not any(r.winner for r in self.resolved if r.point.required):
            raise KernelFeatureMissing("this kernel has no fs_dax tracepoints")
        try:
            self.bpf = BPF(src_file=bpf_file("pmemtrace.bpf.c").encode(), cflags=self.cflags())
        except Exception as e:  # bcc raises bare Exception
            msg = str(e)
            if "super-user" in msg or "Operation not permitted" in msg:
                raise PrivilegeError("bcc needs root (or CAP_BPF+CAP_PERFMON): try sudo") from None
            raise ProbeAttachError(f"bcc could not compile bpf/pmemtrace.bpf.c: {msg.strip()[-300:]}") from None
        try:
            for r in self.resolved:
                if r.point.kind != "kprobe" or r.winner is None:
                    continue
                try:
                    self.bpf.attach_kprobe(event=r.winner, fn_name=r.function.encode())
                    if r.point.retprobe:
                        self.bpf.attach_kretprobe(event=r.winner, fn_name=r.point.retprobe.encode())
                except Exception as e:
                    self.failed.append((r.point.name, str(e).strip()[:120]))
            self.bpf["events"].open_ring_buffer(self._on_event)
        except BaseException:
            self.close()
            raise

    def _on_event(self, ctx, data, size):
        ev = decode(ctypes.string_at(data, EVENT_SIZE))
        if ev.name == "devdax_fault":
            ev.fields["order"] = DEVDAX_ORDER.get(ev.fields.get("order", 0), ev.fields.get("order"))
            self._devdax[ev.tid] = ev
            return
        if ev.name == "devdax_fault_ret":
            entry = self._devdax.pop(ev.tid, None)
            if entry is not None:
                entry.fields["result"] = ev.fields.get("result", 0)
                self.pending.append(entry)
            return
        self.pending.append(ev)

    def drain(self, timeout):
        """Events the ring buffer delivered within *timeout* seconds."""
        if self.bpf is None:
            return []
        self.bpf.ring_buffer_poll(int(timeout * 1000))
        out, self.pending = self.pending, []
        return out

    def stop(self):
        """Nothing to pause: BPF programs detach in :meth:`close`; the
        session's final drain is bounded instead."""

    def lost(self):
        try:
            t = self.bpf["lost"]
            return int(t.sum(t.Key(0)).value)
        except Exception:
            return 0

    def close(self):
        if self.bpf is not None:
            try:
                self.bpf.ring_buffer_consume()
            except Exception:
                pass
            self.bpf.cleanup()
            self.bpf = None
